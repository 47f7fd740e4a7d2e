"""Azure target. `nsg_rules` is pure (policy -> NSGs and ASGs); Pulumi components load separately."""
