"""GCP target. Its segmentation compiler is `components.segmentation.gcp_firewall`; Pulumi components load separately."""
