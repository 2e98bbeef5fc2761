"""One module per rule; `audits.registry.all_rules()` collects them."""
