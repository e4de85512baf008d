// Package dataplane is xdpipe's data plane as a library: AF_XDP sockets
// behind an XDP program on each interface, a run-to-completion worker per
// queue running a chain of stages, and their metrics.
//
//   - Options configure a Daemon. Their zero values are the defaults:
//     enums are types, queues and CPUs ints, durations time.Duration.
//     Stages are pipeline's registry kinds (NewStage) or the caller's own
//     (Stage.New). Package config reads them from `xdpipe run`'s YAML file.
//   - Open validates the Options before it attaches anything, then makes
//     the daemon; Run drives it until its context ends; Reload swaps
//     rules and stages under traffic; Collector exports its metrics for
//     the caller to serve; Close releases it all. The daemon opens no
//     listener, parses no configuration file and knows no flag: the
//     command does that.
//     Check validates as Open does and creates nothing.
//   - OpenPort is the one way to open AF_XDP sockets: check the interface,
//     make the sockets, fill each before it is registered, load the XDP
//     program (redirect, or steer with rules, their maps pinned where asked),
//     attach, register. Package gen/xskport opens gen's AF_XDP engine through it.
//   - The daemon reaches the kernel through a small unexported interface,
//     so its tests run in-process on fake ports without root.
//   - The RDMA output port ships frames of the rdma stage straight from
//     the UMEM (package rdma).
//
// examples/countudp embeds a Daemon with a stage of its own.
package dataplane
