package pipeline

import (
	"errors"

	"github.com/xdpipe/xdpipe/internal/frame"
)

// Parse errors. They are preallocated values: parsing a malformed frame
// allocates nothing either.
var (
	ErrTruncated = errors.New("truncated header")
	ErrMalformed = errors.New("malformed header")
)

// Headers are the parsed header fields of one frame: offsets into the frame
// and the fields rules match on (see internal/frame). A Headers value is
// reused frame after frame (Parse overwrites every field); it holds no
// pointer into the frame.
//
// We parse ourselves rather than with gopacket's DecodingLayerParser: the
// parser with preallocated layers does allocate nothing on well-formed
// Ethernet/IPv4/UDP (testing.AllocsPerRun == 0), but it allocates two
// objects per truncated or malformed frame (its errors are built with
// fmt.Errorf), which hostile traffic can trigger at line rate, and it costs
// ~136 ns/frame against ~15 ns here (see BenchmarkParse*,
// TestDecodingLayerParserAllocs).
type Headers frame.Headers

// Parse fills h from the frame with xdpipe's one frame parser, which has
// the steering program's limits, so the filter stage and the kernel agree
// on what is malformed. On error the fields parsed so far are kept
// (EtherType and VLANs for a frame with a bad IP header) and the rest
// zeroed: ErrTruncated for a frame cut short, ErrMalformed for a field no
// valid frame has (a third VLAN tag, a bad IP version or IHL, too long an
// IPv6 extension header chain).
func (h *Headers) Parse(b []byte) error {
	switch r := frame.Parse(b, (*frame.Headers)(h)); {
	case r == frame.ReasonNone:
		return nil
	case r.Truncated():
		return ErrTruncated
	default:
		return ErrMalformed
	}
}
