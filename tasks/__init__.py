"""Built-in tasks: one module per task family, each registering with `@register_task`."""
