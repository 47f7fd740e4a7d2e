"""GCP target. `firewall_rules` is pure (policy -> firewall rules and tags); Pulumi components load separately."""
