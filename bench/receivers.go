package bench

// feed is the generator a receiver's cells are sent by.
type feed int

const (
	// feedLive: gen's live frames up to a page, its xsk engine above.
	feedLive feed = iota
	// feedXSK: gen's xsk engine (AF_XDP TX, copy mode on a veth) at every
	// size, not only above a page.
	feedXSK
	// feedBare: the bare live-frames generator (gen.LiveOptions.Bare), the
	// reference gen's live engine is measured against; up to a page only.
	feedBare
)

// receiver is one receiver of the rate matrix, or one reflector of the
// latency matrix, with all its traits.
type receiver struct {
	name string
	// run sets up a receiver this package runs itself, as a child of the
	// harness (through ReceiverMain); nil for a separate program.
	run rxFunc
	// ext is the separate program (external.go) when run is nil.
	ext  externalRx
	feed feed
	// echo: a reflector of the latency matrix (LatencyConfig), started as
	// receivers are but not a receiver of the rate matrix.
	echo bool
}

// receivers are every receiver, in matrix order: the ceiling, the same
// receiver fed by the bare generator (what gen's stamps cost), xdpipe,
// then the alternatives. c-xsk-* and xdp-drop-xsktx follow xdpipe-l2fwd:
// the C reference doing the same jobs (c-xsk-poll: rxdrop blocking in
// poll(2) when idle, the reference for wakeup mode), and the kernel's
// copy-mode AF_XDP TX ceiling that l2fwd runs into. The receivers that
// only some comparisons use come last, by name, and the latency
// matrix's reflectors after them.
var receivers = []receiver{
	{name: "xdp-drop", run: rxXDPDrop},
	{name: "xdp-drop-bare", run: rxXDPDropBare, feed: feedBare},
	{name: "xdpipe-spin", ext: rxdropRx("spin", false)},
	{name: "xdpipe-wakeup", ext: rxdropRx("wakeup", false)},
	{name: "xdpipe-l2fwd", ext: l2fwdRx()},
	{name: "c-xsk-rxdrop", ext: xskCRx("rxdrop", false)},
	{name: "c-xsk-poll", ext: xskCRx("rxdrop", true)},
	{name: "c-xsk-l2fwd", ext: xskCRx("l2fwd", false)},
	{name: "xdp-drop-xsktx", run: rxXDPDropXSKTX, feed: feedXSK},
	{name: "xdpipe-steer10k", ext: steer10kRx()},
	{name: "asavie-xdp", ext: asavieRx("spin")},
	{name: "asavie-poll", ext: asavieRx("wakeup")},
	{name: "afpacket3", run: rxAFPacket},
	{name: "recvmmsg", run: rxRecvmmsg},
	{name: "udp", run: rxUDP},
	// The pipeline receiving only, without and with the rx delay
	// histogram: what the XDP program's stamp costs the rate.
	{name: "xdpipe-count", ext: runRx("count", "count")},
	{name: "xdpipe-count-delay", ext: runRx("count, rx delay", "count", "--rx-delay")},
	{name: "xdpipe-track", ext: rxdropRx("spin", true)},
	{name: "udp-echo", run: udpEcho, echo: true},
}

// Receivers lists the names Run accepts, in matrix order.
func Receivers() []string {
	var names []string
	for _, r := range receivers {
		if !r.echo {
			names = append(names, r.name)
		}
	}
	return names
}

// receiverNamed is the receiver (or reflector) called name.
func receiverNamed(name string) (*receiver, bool) {
	for i := range receivers {
		if receivers[i].name == name {
			return &receivers[i], true
		}
	}
	return nil, false
}
