"""GENEVE from the AWS Gateway Load Balancer, handled by the agent (the kernel here has no GENEVE module).

`packet` parses and validates (pure), `flows` remembers each flow's outer
addresses and options so replies go back the way the flow came, `gateway`
owns the UDP listener, the TUN device and the kernel objects that route
replies into it, `worker` moves packets in user space, and `fastpath` loads
the eBPF programs (`bpf/geneve.bpf.c`) that do the same in the kernel,
leaving the worker what they do not understand.
"""
