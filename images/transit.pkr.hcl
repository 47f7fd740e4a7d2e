# The edge and connector image, one template for every cloud and for data
# centers (docs/images.md). Every source runs the same provisioning script
# (images/provision.sh) on Debian 12; only the boot source differs, which tells
# the boot step where the boot document comes from.
#
#   make image-validate                     # packer validate, part of `make test`
#   packer build -only=amazon-ebs.transit -var version=0.1.0 images/   # AMI
#   make image                              # QCOW2 + VMDK here (debootstrap: images/build-qemu.sh)

packer {
  required_version = ">= 1.9.5"
  # Built from Go modules by tools/build-packer.sh (versions in tools/versions.env).
  required_plugins {
    amazon = {
      source  = "github.com/hashicorp/amazon"
      version = "~> 1.8"
    }
    azure = {
      source  = "github.com/hashicorp/azure"
      version = "~> 1.4"
    }
    googlecompute = {
      source  = "github.com/hashicorp/googlecompute"
      version = "~> 1.2"
    }
    qemu = {
      source  = "github.com/hashicorp/qemu"
      version = "~> 1.0"
    }
  }
}

variable "version" {
  type        = string
  description = "Image version: the repository's (pyproject.toml), which is also the agent's."
  validation {
    condition     = can(regex("^[0-9]+\\.[0-9]+\\.[0-9]+$", var.version))
    error_message = "The version must be MAJOR.MINOR.PATCH (the Azure gallery requires it)."
  }
}

variable "stage_dir" {
  type        = string
  default     = "build/image/stage"
  description = "What images/stage.sh prepared: the wheel, its wheelhouse, files/ and provision.sh."
}

variable "output_dir" {
  type        = string
  default     = "build/image"
  description = "Where the QCOW2 and VMDK (qemu) and the manifest land."
}

# --- AWS ---------------------------------------------------------------------
variable "aws_region" {
  type    = string
  default = "us-east-1"
}

variable "aws_ami_regions" {
  type        = list(string)
  default     = []
  description = "More regions to copy the AMI to."
}

variable "aws_instance_type" {
  type    = string
  default = "t3.small"
}

# --- Azure -------------------------------------------------------------------
variable "azure_subscription_id" {
  type    = string
  default = "00000000-0000-0000-0000-000000000000"
}

variable "azure_resource_group" {
  type    = string
  default = "transit-images"
}

variable "azure_location" {
  type    = string
  default = "westeurope"
}

variable "azure_gallery" {
  type        = string
  default     = "transit_gallery"
  description = "Azure compute gallery that receives the image version."
}

variable "azure_gallery_image" {
  type        = string
  default     = "transit-node"
  description = "Image definition in the gallery (Linux, generalized, Hyper-V gen 2)."
}

variable "azure_replication_regions" {
  type    = list(string)
  default = []
}

variable "azure_vm_size" {
  type    = string
  default = "Standard_B2s"
}

# --- GCP ---------------------------------------------------------------------
variable "gcp_project_id" {
  type    = string
  default = "transit-images"
}

variable "gcp_zone" {
  type    = string
  default = "europe-west1-b"
}

variable "gcp_image_family" {
  type    = string
  default = "transit-node"
}

# --- qemu (data centers) -----------------------------------------------------
variable "qemu_base_image" {
  type        = string
  default     = "https://cloud.debian.org/images/cloud/bookworm/latest/debian-12-genericcloud-amd64.qcow2"
  description = "Debian 12 cloud image the qemu source starts from (needs the internet; `make image` uses debootstrap instead)."
}

variable "qemu_base_checksum" {
  type    = string
  default = "file:https://cloud.debian.org/images/cloud/bookworm/latest/SHA512SUMS"
}

variable "qemu_accelerator" {
  type    = string
  default = "kvm"
}

locals {
  stamp    = formatdate("YYYYMMDDhhmmss", timestamp())
  name     = "transit-${replace(var.version, ".", "-")}-${local.stamp}"
  password = uuidv4()
  # Where each image's boot step reads its boot document (dataplane/boot_sources.py).
  boot_source = {
    "amazon-ebs"    = "aws"
    "azure-arm"     = "azure"
    "googlecompute" = "gcp"
    "qemu"          = "drive"
  }
  labels = {
    "transit-version" = replace(var.version, ".", "-")
  }
}

source "amazon-ebs" "transit" {
  region        = var.aws_region
  ami_regions   = var.aws_ami_regions
  instance_type = var.aws_instance_type
  ami_name      = local.name
  source_ami_filter {
    filters = {
      name                = "debian-12-amd64-*"
      architecture        = "x86_64"
      virtualization-type = "hvm"
      root-device-type    = "ebs"
    }
    owners      = ["136693071363"] # Debian
    most_recent = true
  }
  ssh_username = "admin"
  ena_support  = true
  imds_support = "v2.0"
  metadata_options {
    http_endpoint = "enabled"
    http_tokens   = "required"
  }
  tags = {
    Name              = local.name
    "transit:version" = var.version
  }
}

source "azure-arm" "transit" {
  use_azure_cli_auth                = true
  subscription_id                   = var.azure_subscription_id
  os_type                           = "Linux"
  image_publisher                   = "Debian"
  image_offer                       = "debian-12"
  image_sku                         = "12-gen2"
  location                          = var.azure_location
  vm_size                           = var.azure_vm_size
  managed_image_name                = local.name
  managed_image_resource_group_name = var.azure_resource_group
  shared_image_gallery_destination {
    subscription        = var.azure_subscription_id
    resource_group      = var.azure_resource_group
    gallery_name        = var.azure_gallery
    image_name          = var.azure_gallery_image
    image_version       = var.version
    replication_regions = var.azure_replication_regions
  }
  azure_tags = {
    "transit-version" = var.version
  }
}

source "googlecompute" "transit" {
  project_id          = var.gcp_project_id
  zone                = var.gcp_zone
  source_image_family = "debian-12"
  source_image_project_id = ["debian-cloud"]
  image_name          = local.name
  image_family        = var.gcp_image_family
  image_labels        = local.labels
  ssh_username        = "packer"
}

source "qemu" "transit" {
  iso_url          = var.qemu_base_image
  iso_checksum     = var.qemu_base_checksum
  disk_image       = true
  format           = "qcow2"
  disk_size        = "4G"
  accelerator      = var.qemu_accelerator
  headless         = true
  net_device       = "virtio-net"
  disk_interface   = "virtio"
  output_directory = "${var.output_dir}/packer-qemu"
  vm_name          = "${local.name}.qcow2"
  # A NoCloud seed that lets Packer in over SSH with a one-build password.
  cd_label = "cidata"
  cd_content = {
    "meta-data" = ""
    "user-data" = <<-EOT
      #cloud-config
      ssh_pwauth: true
      users:
        - name: packer
          sudo: "ALL=(ALL) NOPASSWD:ALL"
          lock_passwd: false
          plain_text_passwd: "${local.password}"
    EOT
  }
  ssh_username     = "packer"
  ssh_password     = local.password
  ssh_timeout      = "15m"
  shutdown_command = "sudo shutdown -P now"
}

build {
  sources = [
    "source.amazon-ebs.transit",
    "source.azure-arm.transit",
    "source.googlecompute.transit",
    "source.qemu.transit",
  ]

  provisioner "file" {
    source      = "${var.stage_dir}/"
    destination = "/tmp/transit-image"
  }

  provisioner "shell" {
    environment_vars = [
      "TRANSIT_BOOT_SOURCE=${local.boot_source[source.type]}",
      "TRANSIT_IMAGE_FILES=/tmp/transit-image",
    ]
    execute_command = "chmod +x {{ .Path }}; sudo -E env {{ .Vars }} {{ .Path }}"
    script          = "${path.root}/provision.sh"
  }

  # Azure images must be generalized before capture.
  provisioner "shell" {
    only            = ["azure-arm.transit"]
    execute_command = "chmod +x {{ .Path }}; sudo -E env {{ .Vars }} {{ .Path }}"
    inline          = ["rm -rf /tmp/transit-image", "/usr/sbin/waagent -force -deprovision+user && export HISTSIZE=0 && sync"]
  }

  # Data centers: the QCOW2 and a VMDK converted from it (VMware ESXi imports streamOptimized).
  post-processor "shell-local" {
    only = ["qemu.transit"]
    inline = [
      "qemu-img convert -f qcow2 -O vmdk -o subformat=streamOptimized ${var.output_dir}/packer-qemu/${local.name}.qcow2 ${var.output_dir}/packer-qemu/${local.name}.vmdk",
    ]
  }

  post-processor "manifest" {
    output = "${var.output_dir}/manifest.json"
  }
}
