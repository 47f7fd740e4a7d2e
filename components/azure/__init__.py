"""Azure target. Its segmentation compiler is `components.segmentation.azure_nsgs`; Pulumi components load separately."""
