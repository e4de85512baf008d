// Package bpf holds xdpipe's XDP programs and their Go loader.
//
// The programs are C (redirect.c, track.c, dropcount.c, steer.c) compiled by
// bpf2go; the generated *_bpfel.go and *_bpfel.o are committed, so building
// xdpipe needs no clang (see gen.go).
//
//   - Redirect (LoadRedirect): every frame goes to the AF_XDP socket
//     registered for its RX queue, or to the kernel stack when none is.
//     LoadTrackingRedirect loads its variant (track.c) that also counts
//     the generated frames it redirects, as gen.Tracker does but for
//     latency, on the CPU that runs the hook, so that a receiver need not
//     read them.
//     RedirectOptions.RxStamp stamps each redirected frame with the time
//     in its XDP metadata area (xsk.h), for the worker's rx delay;
//     RxMetadataIfindex loads the variant built with XDPIPE_RX_META,
//     bound to one interface, that also puts the driver's RX hash and
//     timestamp there (the XDP metadata kfuncs). Steer takes the same two.
//   - DropCount (LoadDropCount): drops and counts, the benchmark ceiling.
//   - Steer (LoadSteer): the rule-driven steering program (steer.c), with
//     the match language of package rules.
//
// # Steering: design, limits, cost
//
// steer.c parses Ethernet, up to two VLAN tags, IPv4 (options, fragments),
// IPv6 (up to 6 hop-by-hop/routing/fragment/destination-options headers),
// UDP, TCP, ICMP and ICMPv6, with exactly the semantics of rules.ParseFrame
// and rules.Set.Match (the fuzz test holds them together). Malformed
// frames take the rule set's Malformed action and are counted by reason.
// The program reads headers from a frame's first buffer only: in a
// multi-buffer frame whose headers continue into a second buffer (not seen
// with real traffic: the first holds at least 3 KiB) they count as
// truncated.
//
// Lookup is a bit-vector intersection; the bitmaps are rules.Compile's
// Tables (the same the filter stage runs in Go), which Apply writes into
// the program's maps. Rules are numbered in priority
// order; per field, a lookup of the frame's value yields the bitmap of the
// rules accepting it (a hash for the interface; 65536-entry arrays for
// VLAN, EtherType, protocol and ports, a port mapping to its elementary
// interval of the rules' ranges; for prefixes, a hash lookup of the masked
// address for each of the 4 longest prefix lengths in use, then an LPM trie
// per family for the shorter ones). Bitmaps (stored once each, deduplicated) are ANDed, the lowest
// set bit wins. A 256-bit summary per bitmap says which 64-bit words are
// non-zero, so the AND touches only candidate words. Fields no rule uses
// are not looked up.
//
// A flow cache sits in front (OVS's exact-match cache): per-CPU LRU hashes
// (131,072 IPv4 and non-IP flows, 65,536 IPv6 flows) keyed by the parsed
// tuple, the fields no rule uses zeroed, holding the decision (the rule's
// counter slot and action, or no match) and the rule-change count it was
// made under; only an entry carrying the live count is used, so a rule
// change takes effect on the next frame. A flow's later frames cost one
// hash lookup whatever the number of rules (measurements in
// bench/results/README.md).
//
//   - Maximum: MaxRules (16384) rules a set; a bitmap is 2 KiB.
//   - Cost per frame of a flow cache miss (a flow's first frame, and its
//     first after a rule change): per field in use, an id lookup (array, hash or LPM)
//     and a bitmap lookup (hash), 4 summary ANDs and in practice one word
//     AND; constant in the number of rules except for the LPM trie's depth
//     (logarithmic in the number of distinct prefixes shorter than the 4
//     longest lengths in use). BenchmarkSteerRuleScaling (the flow cache
//     off) fails when 10,000 rules cost more than twice one rule;
//     BenchmarkSteerLPM measures 10,000 distinct prefixes. On veth the
//     program runs in the sender's softirq, so what it costs per frame
//     comes off the sender's rate in full.
//   - Verifier: parse, match and field_ids are global BPF functions
//     (verified once each), the bitmaps match keeps are packed (its states
//     depend on how many fields are in use, not which), the scan for the
//     first common bit is a bpf_loop callback (5.17) and ctz is
//     branch-free. TestSteerVerifierBudget holds the instructions the
//     verifier processes under 100,000 (its limit is 1,000,000);
//     internal/vmtest's TestVMBPF runs it, and the program's tests, on the
//     VM's newer kernel, whose verifier explores more states.
//   - Memory: one bitmap per distinct field value, prefix and port
//     interval, per generation: 10,000 rules with distinct /32 destinations
//     and ports hold about 20,000 bitmaps, 40 MiB of kernel memory. Maps
//     holding bitmaps are BPF_F_NO_PREALLOC, so only what a set uses is
//     allocated. The flow cache is preallocated: 19.5 MiB plus 1.5 MiB
//     per possible CPU, as the kernel counts it in the maps' fdinfo;
//     SteerMemory works out the program's whole footprint.
//   - Update: Apply writes the inactive of two generations (every key
//     carries its generation) and increments one u32; frames see the old set or
//     the new one, never a mix; steer_active counts the changes, which
//     makes every flow cache entry stale at once. Before rewriting a generation Apply waits
//     for an RCU grace period (membarrier MEMBARRIER_CMD_GLOBAL), so no
//     frame still reads it. Rules unchanged across an update keep their
//     counters.
//   - Pinning (SteerOptions.PinPath): maps and bpf_links pinned on bpffs
//     (mounted at /sys/fs/bpf if needed); rules and attachment survive the
//     process, and `xdpipe rules` changes them through the pins.
//
// # Attaching
//
// Programs attach through a bpf_link (link.AttachXDP, Linux 5.9 or later),
// so the kernel detaches them when the last reference goes away: Close, or
// the process exiting or crashing. AttachAuto tries driver (native) mode,
// then generic (SKB) mode, and Attach reports which one it got.
//
// Fallback: on kernels without XDP bpf_link (before 5.9) Attach fails with
// an error wrapping ebpf.ErrNotSupported. The older netlink attachment
// (IFLA_XDP, what `ip link set dev IF xdp obj ...` does) is deliberately not
// implemented: a program attached that way stays attached after a crash, which
// is the failure mode the bpf_link design exists to avoid. Every kernel
// xdpipe targets has bpf_link.
//
// # Namespaces
//
// Interface indexes, attachments and BPF_PROG_RUN's ingress_ifindex are
// resolved in the network namespace of the calling thread: call Attach from a
// thread inside the interface's namespace.
package bpf
