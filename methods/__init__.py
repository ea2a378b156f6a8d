"""Built-in compression methods: one module per method, each registering with `@register_method`."""
