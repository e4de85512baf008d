package rdma

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Private data carried by the rdma_cm connection handshake.
//
//	connect (sender):  magic u32, version u16, flags u16, max message u32
//	accept (sink):     magic u32, version u16, flags u16, credits u32, buffer size u32
//	reject (sink):     magic u32, version u16, flags u16, reason (text)
//
// All big-endian. The CM pads private data, so lengths are at least these.
// A reject's flags say why, where the sender can act on it
// (rejectBufferSize); a sink that does not say leaves them 0.
const (
	protoMagic   uint32 = 0x58445052 // "XDPR"
	protoVersion uint16 = 1
	hdrLen              = 8
	privLen             = 16 // connect and accept
	// maxReason bounds a reject's reason text.
	maxReason = 100
)

// rejectBufferSize in a reject's flags: the sender's packets are longer
// than the sink's receive buffers (ErrBufferSize).
const rejectBufferSize uint16 = 1

func putHdr(b []byte, flags uint16) {
	binary.BigEndian.PutUint32(b[0:], protoMagic)
	binary.BigEndian.PutUint16(b[4:], protoVersion)
	binary.BigEndian.PutUint16(b[6:], flags)
}

func checkHdr(b []byte) error {
	if len(b) < hdrLen || binary.BigEndian.Uint32(b) != protoMagic {
		return errors.New("peer is not an xdpipe rdma endpoint (bad private data)")
	}
	if v := binary.BigEndian.Uint16(b[4:]); v != protoVersion {
		return fmt.Errorf("protocol version %d, want %d", v, protoVersion)
	}
	return nil
}

// connectData is a sender's connection request, announcing the longest
// packet it sends (0: not announced).
func connectData(maxMessage uint32) []byte {
	b := make([]byte, privLen)
	putHdr(b, 0)
	binary.BigEndian.PutUint32(b[8:], maxMessage)
	return b
}

// parseConnect reads a connection request: the longest packet the sender
// announces, 0 if it announces none.
func parseConnect(b []byte) (maxMessage uint32, err error) {
	if err := checkHdr(b); err != nil {
		return 0, err
	}
	if len(b) < 12 {
		return 0, nil
	}
	return binary.BigEndian.Uint32(b[8:]), nil
}

// acceptData is a sink's acceptance: the buffers it posted (the sender's
// credits) and their size (the longest packet it takes).
func acceptData(credits, bufferSize uint32) []byte {
	b := make([]byte, privLen)
	putHdr(b, 0)
	binary.BigEndian.PutUint32(b[8:], credits)
	binary.BigEndian.PutUint32(b[12:], bufferSize)
	return b
}

// parseAccept reads a sink's acceptance.
func parseAccept(b []byte) (credits, bufferSize uint32, err error) {
	if err := checkHdr(b); err != nil {
		return 0, 0, err
	}
	if len(b) < privLen {
		return 0, 0, fmt.Errorf("accept of %d bytes, want %d", len(b), privLen)
	}
	return binary.BigEndian.Uint32(b[8:]), binary.BigEndian.Uint32(b[12:]), nil
}

// rejectData is a sink's refusal with its reason, cut to maxReason bytes.
func rejectData(flags uint16, reason string) []byte {
	b := make([]byte, hdrLen, hdrLen+maxReason)
	putHdr(b, flags)
	if len(reason) > maxReason {
		reason = reason[:maxReason]
	}
	return append(b, reason...)
}

// parseReject reads a sink's refusal; ok is false when it is not one (a
// rejection by the CM itself, or a peer that is not a sink).
func parseReject(b []byte) (flags uint16, reason string, ok bool) {
	if checkHdr(b) != nil || len(b) <= hdrLen {
		return 0, "", false
	}
	return binary.BigEndian.Uint16(b[6:]), cstr(b[hdrLen:]), true
}

// cstr is b up to its first NUL (the CM pads private data with zeros).
func cstr(b []byte) string {
	for i, c := range b {
		if c == 0 {
			return string(b[:i])
		}
	}
	return string(b)
}
