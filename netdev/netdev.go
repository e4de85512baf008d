// Package netdev reads what a network device's driver can do for XDP and
// AF_XDP: the XDP feature bits and the zero-copy segment limit from the
// kernel's "netdev" generic-netlink family (NETDEV_CMD_DEV_GET, Linux 6.3),
// the active queue count (NETDEV_CMD_QUEUE_GET, Linux 6.8) and the driver's
// name (ethtool's driver info). WatchLinks watches interfaces for what
// stops a data path: deletion, or the XDP program replaced or removed.
//
// It talks netlink through mdlayher/genetlink and mdlayher/netlink's
// attribute encoder and decoder rather than hand-built messages. It is a
// package of its own because xsk imports golang.org/x/sys only; it returns
// its own facts (Device), and the caller hands xsk what it needs of them
// as plain data (dataplane.SocketDriver builds xsk.Driver).
//
// Every call works in the network namespace of the calling thread.
package netdev

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/mdlayher/genetlink"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// ErrNotSupported: the kernel has no netdev generic-netlink family (before
// Linux 6.3), or not the command asked for. Test with errors.Is.
var ErrNotSupported = errors.New("not supported")

// XDPFeatures is the xdp-features bitmask (enum netdev_xdp_act).
type XDPFeatures uint64

// The XDP feature bits.
const (
	XDPBasic       XDPFeatures = 1 << iota // XDP_ABORTED, XDP_DROP, XDP_PASS, XDP_TX
	XDPRedirect                            // XDP_REDIRECT out of the device's programs
	XDPNdoXmit                             // receives redirected frames (ndo_xdp_xmit)
	XDPXSKZeroCopy                         // AF_XDP zero-copy
	XDPHWOffload                           // programs offloaded to the NIC
	XDPRxSG                                // multi-buffer (fragmented) frames on receive
	XDPNdoXmitSG                           // multi-buffer frames through ndo_xdp_xmit
)

var featureNames = []string{"basic", "redirect", "ndo-xmit", "xsk-zerocopy", "hw-offload", "rx-sg", "ndo-xmit-sg"}

// String lists the set bits by their kernel names, comma-separated
// ("basic,redirect,rx-sg"), "none" for none; unknown bits show as hex.
func (f XDPFeatures) String() string { return bitNames(uint64(f), featureNames) }

// bitNames lists the bits of f set by their names (bit i: names[i]),
// comma-separated, unknown bits in hex, "none" for none.
func bitNames(f uint64, names []string) string {
	var out []string
	for i, n := range names {
		if f&(1<<i) != 0 {
			out = append(out, n)
		}
	}
	if rest := f &^ (1<<len(names) - 1); rest != 0 {
		out = append(out, fmt.Sprintf("%#x", rest))
	}
	if len(out) == 0 {
		return "none"
	}
	return strings.Join(out, ",")
}

// Has reports whether every bit of want is set.
func (f XDPFeatures) Has(want XDPFeatures) bool { return f&want == want }

// RxMetadata is the xdp-rx-metadata-features bitmask (enum
// netdev_xdp_rx_metadata): the XDP RX metadata kfuncs the driver
// implements.
type RxMetadata uint64

// The RX metadata bits.
const (
	RxTimestamp RxMetadata = 1 << iota // bpf_xdp_metadata_rx_timestamp
	RxHash                             // bpf_xdp_metadata_rx_hash
	RxVLANTag                          // bpf_xdp_metadata_rx_vlan_tag
)

var rxMetadataNames = []string{"timestamp", "hash", "vlan-tag"}

// String lists the set bits by their kernel names ("timestamp,hash"),
// "none" for none; unknown bits show as hex.
func (m RxMetadata) String() string { return bitNames(uint64(m), rxMetadataNames) }

// Device is what the kernel says about one device's XDP abilities.
type Device struct {
	// Known is set when the kernel answered: the fields below are real.
	Known   bool
	Ifindex int
	// Name is the interface name and Driver the driver's name (ethtool
	// driver info, e.g. "veth", "virtio_net"; empty if unknown).
	Name, Driver string
	// Features is the device's xdp-features.
	Features XDPFeatures
	// RxMetadata is its xdp-rx-metadata-features: the RX metadata an XDP
	// program bound to it can read.
	RxMetadata RxMetadata
	// ZeroCopyMaxSegs is xdp-zc-max-segs: how many buffers one packet may
	// take in zero-copy mode (1: no multi-buffer with zero-copy).
	ZeroCopyMaxSegs uint32
	// RXQueues and TXQueues are the active (real) queue counts, 0 when
	// the kernel cannot list queues (before Linux 6.8).
	RXQueues, TXQueues int
}

// Generic-netlink constants of the netdev family (include/uapi/linux/netdev.h).
const (
	familyName = "netdev"

	cmdDevGet   = 1  // NETDEV_CMD_DEV_GET
	cmdQueueGet = 10 // NETDEV_CMD_QUEUE_GET

	attrDevIfindex      = 1 // NETDEV_A_DEV_IFINDEX, u32
	attrDevXDPFeatures  = 3 // NETDEV_A_DEV_XDP_FEATURES, u64
	attrDevXDPZCMaxSegs = 4 // NETDEV_A_DEV_XDP_ZC_MAX_SEGS, u32
	attrDevRxMetadata   = 5 // NETDEV_A_DEV_XDP_RX_METADATA_FEATURES, u64

	attrQueueID      = 1 // NETDEV_A_QUEUE_ID, u32
	attrQueueIfindex = 2 // NETDEV_A_QUEUE_IFINDEX, u32
	attrQueueType    = 3 // NETDEV_A_QUEUE_TYPE, u32: 0 rx, 1 tx
)

// Get reads the device with this ifindex. Without the netdev family it
// fails with ErrNotSupported; the queue counts stay 0 on a kernel that
// cannot list queues.
func Get(ifindex int) (Device, error) {
	d := Device{Ifindex: ifindex, Name: fmt.Sprintf("ifindex %d", ifindex)}
	c, err := genetlink.Dial(nil)
	if err != nil {
		return d, fmt.Errorf("netdev: dial generic netlink: %w", err)
	}
	defer c.Close()
	fam, err := c.GetFamily(familyName)
	if errors.Is(err, os.ErrNotExist) {
		return d, fmt.Errorf("netdev: kernel without the netdev netlink family (Linux 6.3+) cannot report xdp-features: %w", ErrNotSupported)
	}
	if err != nil {
		return d, fmt.Errorf("netdev: get family %s: %w", familyName, err)
	}
	ae := netlink.NewAttributeEncoder()
	ae.Uint32(attrDevIfindex, uint32(ifindex))
	req, err := ae.Encode()
	if err != nil {
		return d, fmt.Errorf("netdev: encode request: %w", err)
	}
	msgs, err := c.Execute(genetlink.Message{
		Header: genetlink.Header{Command: cmdDevGet, Version: fam.Version},
		Data:   req,
	}, fam.ID, netlink.Request)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, unix.ENODEV) {
			return d, fmt.Errorf("netdev: no interface with index %d in this network namespace: %w", ifindex, unix.ENODEV)
		}
		return d, fmt.Errorf("netdev: get device %d: %w", ifindex, err)
	}
	for _, m := range msgs {
		ad, err := netlink.NewAttributeDecoder(m.Data)
		if err != nil {
			return d, fmt.Errorf("netdev: decode device %d: %w", ifindex, err)
		}
		for ad.Next() {
			switch ad.Type() {
			case attrDevXDPFeatures:
				d.Features = XDPFeatures(ad.Uint64())
			case attrDevXDPZCMaxSegs:
				d.ZeroCopyMaxSegs = ad.Uint32()
			case attrDevRxMetadata:
				d.RxMetadata = RxMetadata(ad.Uint64())
			}
		}
		if err := ad.Err(); err != nil {
			return d, fmt.Errorf("netdev: decode device %d: %w", ifindex, err)
		}
	}
	d.RXQueues, d.TXQueues, err = queues(c, fam, ifindex)
	if err != nil {
		return d, err
	}
	d.Name, d.Driver = driverInfo(ifindex)
	d.Known = true
	return d, nil
}

// queues counts the device's active RX and TX queues with a
// NETDEV_CMD_QUEUE_GET dump; 0, 0 on a kernel without the command.
func queues(c *genetlink.Conn, fam genetlink.Family, ifindex int) (rx, tx int, err error) {
	ae := netlink.NewAttributeEncoder()
	ae.Uint32(attrQueueIfindex, uint32(ifindex))
	req, err := ae.Encode()
	if err != nil {
		return 0, 0, fmt.Errorf("netdev: encode request: %w", err)
	}
	msgs, err := c.Execute(genetlink.Message{
		Header: genetlink.Header{Command: cmdQueueGet, Version: fam.Version},
		Data:   req,
	}, fam.ID, netlink.Request|netlink.Dump)
	if errors.Is(err, unix.EOPNOTSUPP) {
		return 0, 0, nil // before Linux 6.8
	}
	if err != nil {
		return 0, 0, fmt.Errorf("netdev: list queues of %d: %w", ifindex, err)
	}
	for _, m := range msgs {
		ad, err := netlink.NewAttributeDecoder(m.Data)
		if err != nil {
			return 0, 0, fmt.Errorf("netdev: decode queue: %w", err)
		}
		idx, typ := -1, -1
		for ad.Next() {
			switch ad.Type() {
			case attrQueueIfindex:
				idx = int(ad.Uint32())
			case attrQueueType:
				typ = int(ad.Uint32())
			}
		}
		if err := ad.Err(); err != nil {
			return 0, 0, fmt.Errorf("netdev: decode queue: %w", err)
		}
		if idx != ifindex {
			continue
		}
		switch typ {
		case 0:
			rx++
		case 1:
			tx++
		}
	}
	return rx, tx, nil
}

// driverInfo returns the interface's name and its driver's name (ethtool
// ETHTOOL_GDRVINFO); the driver is empty if the ioctl fails.
func driverInfo(ifindex int) (name, driver string) {
	name = fmt.Sprintf("ifindex %d", ifindex)
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return name, ""
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("")
	if err != nil {
		return name, ""
	}
	ifr.SetUint32(uint32(ifindex))
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFNAME, ifr); err != nil {
		return name, ""
	}
	name = ifr.Name()
	info, err := unix.IoctlGetEthtoolDrvinfo(fd, name)
	if err != nil {
		return name, ""
	}
	return name, unix.ByteSliceToString(info.Driver[:])
}

// String is the start-line form: "xdp-features basic,redirect,rx-sg
// xdp-rx-metadata hash zc-max-segs 1".
func (d Device) String() string {
	return fmt.Sprintf("xdp-features %v xdp-rx-metadata %v zc-max-segs %d", d.Features, d.RxMetadata, d.ZeroCopyMaxSegs)
}

// Describe is Get for start lines: the device (not Known when the kernel
// cannot say) and its text, its features or why they are unknown.
func Describe(ifindex int) (Device, string) {
	d, err := Get(ifindex)
	if err != nil {
		if errors.Is(err, ErrNotSupported) {
			return d, "xdp-features unknown (kernel without the netdev netlink family)"
		}
		return d, fmt.Sprintf("xdp-features unknown (%v)", err)
	}
	return d, d.String()
}
