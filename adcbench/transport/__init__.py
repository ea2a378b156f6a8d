"""Layer 3c, transport: moving message bytes between the roles and metering them per direction.

Owns the `Transport` contract and the `Meter` (base.py) and the in-process `Loopback`
(loopback.py); process- and host-crossing transports and link models go here too. A transport
sees only bytes: it imports `wire` (to read the byte breakdown) and `errors`, never methods,
models or the loop, so a method never knows how its bytes travel. It sits below `train` because
the loop picks the transport its roles talk through.
"""

from .base import DIRECTIONS, Meter, Transport
from .loopback import Loopback

__all__ = ["DIRECTIONS", "Loopback", "Meter", "Transport"]
