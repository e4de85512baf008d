package dataplane

import (
	"fmt"
	"net"
)

// Check validates cfg as Open does, and attaches, allocates and creates
// nothing: the configuration, the interfaces and queues, the CPUs, the
// rules, the stages' options and capture paths, the memory the
// configuration costs, the metrics address. It is `xdpipe run --check`,
// as `nginx -t`: a configuration too large for the machine is refused
// here, where trying it costs nothing.
func Check(cfg Config) error {
	p, err := resolve(cfg, kernel{})
	if err != nil {
		return err
	}
	p.checkOnly = true
	cs, err := buildChains(p)
	if err != nil {
		return err
	}
	if err := cs.close(); err != nil {
		return err
	}
	if m := cfg.WithDefaults().Metrics; m != "off" {
		ln, err := net.Listen("tcp", m)
		if err != nil {
			return fmt.Errorf("metrics address %s: %w (choose another with --metrics, or \"off\")", m, err)
		}
		ln.Close()
	}
	return nil
}
