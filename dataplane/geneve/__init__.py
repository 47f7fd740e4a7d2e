"""GENEVE from the AWS Gateway Load Balancer, handled in user space (the kernel here has no GENEVE module).

`packet` parses and validates (pure), `flows` remembers each flow's outer
addresses and options so replies go back the way the flow came, `gateway`
owns the UDP listener, the TUN device and the kernel objects that route
replies into it.
"""
