package pipeline

import (
	"cmp"
	"errors"
	"fmt"
	"time"

	"github.com/xdpipe/xdpipe/internal/sat"
)

// IPFIXOptions are the ipfix stage's options in a configuration file.
type IPFIXOptions struct {
	// Collector is the IPFIX collector's host:port (UDP), such as nfcapd's
	// -b and -p. It must resolve when the stage is built.
	Collector string `yaml:"collector"`
	// ActiveTimeout exports a flow that is still going on this long after
	// its last record's start, with the counts since (default 60s,
	// 1s..1h).
	ActiveTimeout time.Duration `yaml:"active_timeout"`
	// IdleTimeout ends a flow that has seen no packet for this long
	// (default 15s, 1s..1h).
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// MaxFlows bounds each worker's flow table (required, 1..MaxIPFIXFlows);
	// a new flow in a full table first exports the flow it replaces.
	MaxFlows int `yaml:"max_flows"`
	// TemplateRefresh is how often the templates go out again (default
	// 30s, 1s..1h; RFC 7011's templateRefreshTimeout for UDP). A collector
	// that restarted reads no record until it has them again: a shorter
	// refresh loses less after a restart, for a few more bytes.
	TemplateRefresh time.Duration `yaml:"template_refresh"`
}

// The ipfix stage's limits and defaults.
const (
	// MaxIPFIXFlows bounds max_flows; the memory check (xsk.CheckMemory)
	// usually refuses less.
	MaxIPFIXFlows        = 1 << 28
	minIPFIXTimeout      = time.Second
	maxIPFIXTimeout      = time.Hour
	defaultIPFIXActive   = 60 * time.Second
	defaultIPFIXIdle     = 15 * time.Second
	ipfixTemplateRefresh = 30 * time.Second
	// A sweep of the whole table takes ipfixSweep, in ipfixSteps steps:
	// a flow is exported at most ipfixSweep after its timeout, and a
	// record waits at most ipfixSweep/ipfixSteps in an unsent message.
	ipfixSweep = 500 * time.Millisecond
	ipfixSteps = 50
)

// MemoryCost implements Costly: the flow table and the message buffer.
func (o *IPFIXOptions) MemoryCost() (uint64, string) {
	if o.MaxFlows <= 0 {
		return 0, "max_flows"
	}
	return sat.Mul(ipfixSlots(min(o.MaxFlows, MaxIPFIXFlows*4)), flowSize) + ipfixMaxMTU, "max_flows"
}

// check validates the options and fills in the defaults.
func (o *IPFIXOptions) check() error {
	if o.Collector == "" {
		return errors.New("needs collector: the IPFIX collector's host:port (UDP)")
	}
	if o.MaxFlows <= 0 || o.MaxFlows > MaxIPFIXFlows {
		return fmt.Errorf("max_flows %d: want 1..%d flows per worker", o.MaxFlows, MaxIPFIXFlows)
	}
	o.ActiveTimeout = cmp.Or(o.ActiveTimeout, defaultIPFIXActive)
	o.IdleTimeout = cmp.Or(o.IdleTimeout, defaultIPFIXIdle)
	o.TemplateRefresh = cmp.Or(o.TemplateRefresh, ipfixTemplateRefresh)
	for _, t := range []struct {
		name string
		d    time.Duration
	}{{"active_timeout", o.ActiveTimeout}, {"idle_timeout", o.IdleTimeout}, {"template_refresh", o.TemplateRefresh}} {
		if t.d < minIPFIXTimeout || t.d > maxIPFIXTimeout {
			return fmt.Errorf("%s %v out of range: want %v..%v", t.name, t.d, minIPFIXTimeout, maxIPFIXTimeout)
		}
	}
	return nil
}
