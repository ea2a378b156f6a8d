import pytest

from adcbench.core.method import METHODS
from adcbench.core.params import Param, parse_spec
from adcbench.core.pipeline import Pipeline
from adcbench.data.task import TASKS
from adcbench.errors import ParamError, UnknownNameError


def test_builtins_registered_and_wildcards():
    assert {"none", "adc", "float"} <= set(METHODS.names())
    assert METHODS.names("ad*") == [n for n in METHODS.names() if n.startswith("ad")]
    assert "digits" in TASKS.names()


def test_unknown_names_suggest_close_matches():
    with pytest.raises(UnknownNameError, match="did you mean adc"):
        METHODS.get("adcc")
    with pytest.raises(UnknownNameError, match="did you mean digits"):
        TASKS.get("digit")


@pytest.mark.parametrize(
    "spec,expected",
    [
        ("adc", [("adc", {})]),
        ("adc:xi=0.1,rule=A", [("adc", {"xi": "0.1", "rule": "A"})]),
        ("adc:xi=1e+0+float:dtype=float16", [("adc", {"xi": "1e+0"}), ("float", {"dtype": "float16"})]),
    ],
)
def test_parse_spec(spec, expected):
    assert parse_spec(spec) == expected


@pytest.mark.parametrize("bad", ["", "adc+", "adc:xi", "adc:=3", "+adc"])
def test_parse_spec_malformed(bad):
    with pytest.raises(ParamError):
        parse_spec(bad)


def test_param_validation_names_parameter_and_range():
    p = Param("xi", float, 0.1, low=0, high=1, low_open=True)
    assert p.parse("0.5") == 0.5
    for bad in ("0", "1.5", "nan", "abc"):
        with pytest.raises(ParamError, match=r"'xi'.*\(0, 1\]"):
            p.parse(bad)
    assert Param("n", int, 1, low=1).parse("3") == 3
    with pytest.raises(ParamError):
        Param("n", int, 1, low=1).parse("2.5")
    with pytest.raises(ParamError, match="one of"):
        Param("rule", str, "B", choices=("A", "B")).parse("Z")


def test_pipeline_spec_canonical_and_terminal_appended():
    p = Pipeline.from_spec("adc:xi=0.1,rule=B")
    assert p.spec == "adc"  # defaults omitted
    assert [s.registry_name for s in p.stages] == ["adc", "float"]
    assert Pipeline.from_spec("adc:xi=0.2+float:dtype=float16").spec == "adc:xi=0.2+float:dtype=float16"


def test_pipeline_rejects_misplaced_stages():
    with pytest.raises(ParamError, match="must be the last"):
        Pipeline.from_spec("float+none")
    with pytest.raises(ParamError, match="must come first"):
        Pipeline.from_spec("none+adc")
