// Command countudp embeds xdpipe's data plane with a stage of its own: it
// counts the UDP packets arriving on an interface, per destination port,
// and prints the counts every interval and when it stops (SIGINT or
// SIGTERM).
//
//	countudp -iface eth1
//
// While it runs, every frame arriving on the interface's queues comes to
// it and is dropped once counted: the kernel's stack sees none of them. It
// needs CAP_BPF, CAP_NET_ADMIN and CAP_NET_RAW.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/xdpipe/xdpipe/dataplane"
	"github.com/xdpipe/xdpipe/pipeline"
)

// udpCounter is the stage: every worker runs one of its own, on its own
// goroutine, and they add up into one table of counts.
type udpCounter struct {
	ports *[1 << 16]atomic.Uint64 // packets by UDP destination port
	h     pipeline.Headers        // this worker's parsing scratch
}

func (c *udpCounter) Process(b *pipeline.Burst) {
	for i := range b.Pkts {
		if c.h.Parse(b.Pkts[i].Data) == nil && c.h.Proto == syscall.IPPROTO_UDP && c.h.HasPorts {
			c.ports[c.h.DstPort].Add(1)
		}
	}
	// The packets keep no verdict: the daemon's default, drop, frees them.
}

func main() {
	iface := flag.String("iface", "", "interface to count on")
	interval := flag.Duration("interval", time.Second, "how often to print the counts")
	flag.Parse()
	if *iface == "" {
		log.Fatal("-iface is required")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	var ports [1 << 16]atomic.Uint64
	d, err := dataplane.Open(ctx, dataplane.Options{
		Interfaces: []string{*iface},
		Poll:       pipeline.PollWakeup, // sleep while no frame comes, rather than spin
		Stages: []dataplane.Stage{{
			Kind: "countudp",
			New: func(pipeline.StageEnv) (pipeline.Stage, error) {
				return &udpCounter{ports: &ports}, nil
			},
		}},
	}, nil)
	if err != nil {
		log.Fatal(err)
	}
	defer d.Close()
	fmt.Printf("counting UDP on %s, queues %v\n", *iface, d.Queues())

	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	tick := time.NewTicker(*interval)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
			report(&ports)
		case err := <-done: // the workers have stopped: the counts are final
			report(&ports)
			if err != nil {
				log.Print(err)
				d.Close()
				os.Exit(1)
			}
			return
		}
	}
}

// report prints a line for each port that had packets.
func report(ports *[1 << 16]atomic.Uint64) {
	for port := range ports {
		if n := ports[port].Load(); n > 0 {
			fmt.Printf("udp dport %d: %d packets\n", port, n)
		}
	}
}
