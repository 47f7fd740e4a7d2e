"""Zero-trust segmentation: one resolver, one reference evaluator, one protocol for every enforcement point.

- `resolve`: the spec's rule endpoints (`any`, networks, groups) turned into addresses, once.
- `intent`: the reference evaluator; every enforcement point must agree with it.
- `intervals`: exact set algebra over flow space (addresses x addresses x services).
- `aws_security_groups`, `azure_nsgs`, `gcp_firewall`: the cloud compilers and evaluators.
- `agent_filters`, `nftables`: each agent's scoped FilterPolicy and the nftables document it installs.
- `members`: which identity speaks for which prefixes (every agent's `members`).
- `firewall_path`: the ordered, stateful walk that Azure NSGs and GCP firewalls share.

Pure: nothing here imports Pulumi or a cloud SDK.
"""
