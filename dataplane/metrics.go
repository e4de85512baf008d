package dataplane

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/xdpipe/xdpipe/bpf"
	"github.com/xdpipe/xdpipe/pipeline"
	"github.com/xdpipe/xdpipe/rules"
)

// Collector exports the daemon's metrics: the workers' and stages'
// (pipeline.Collector), the UMEMs' frame places, the steering program's
// per-rule hits and the frames of queues without a socket. The caller
// registers it and serves it (promhttp); the daemon opens no listener.
func (d *Daemon) Collector() prometheus.Collector {
	umems := map[string]pipeline.Accounted{}
	for i, u := range d.umems {
		umems[d.names[i]] = u
	}
	c := pipeline.NewCollector(d.workers, umems)
	c.AddFunc(d.steerMetrics)
	c.AddFunc(d.unboundMetrics)
	return c
}

var steerHits = prometheus.NewDesc("xdpipe_steer_rule_hits_total",
	"Frames matched by each steering rule in the XDP program: the rule_series rules with the most, each by name, and the "+
		"others' sum as rule \"(others)\".",
	[]string{"iface", "rule", "action"}, nil)

var steerMisses = prometheus.NewDesc("xdpipe_steer_cache_misses_total",
	"Frames the steering program's flow cache missed: the rule tables decided them. Hits are the rules' frames less these.",
	[]string{"iface"}, nil)

// DefaultRuleSeries is how many steering rules get a series of their own
// when Options.RuleSeries is 0.
const DefaultRuleSeries = 100

// otherRules is the rule label of the hits of the rules without a series.
const otherRules = "(others)"

// steerMetrics exports the steering programs' per-rule hits and flow
// cache misses. It holds the daemon's lock only to list the programs: a
// reload or a rule change does not wait for a scrape. Scrapes take turns
// (scrapeMu) over buffers kept from one to the next: a scrape of ten
// thousand rules allocates little, so scrapes bring on few garbage
// collections, whose pauses stop the workers too.
func (d *Daemon) steerMetrics(ch chan<- prometheus.Metric) {
	type steered struct {
		iface string
		st    steerer
	}
	var progs []steered
	d.mu.Lock()
	for i, pt := range d.ports {
		if st := pt.steer(); st != nil {
			progs = append(progs, steered{d.p.ifaces[i].Name, st})
		}
	}
	series := cmp.Or(d.p.opts.RuleSeries, DefaultRuleSeries)
	d.mu.Unlock()
	d.scrapeMu.Lock()
	defer d.scrapeMu.Unlock()
	for _, p := range progs {
		stats, err := p.st.RuleStatsInto(d.scrape.stats)
		if err != nil {
			continue
		}
		d.scrape.stats = stats
		var others uint64
		d.scrape.top, others = topRules(stats, series, d.scrape.top)
		for _, i := range d.scrape.top {
			rs := &stats[i]
			ch <- prometheus.MustNewConstMetric(steerHits, prometheus.CounterValue, float64(rs.Packets), p.iface, ruleName(rs.Rule), rs.Rule.Action.String())
		}
		if len(d.scrape.top) < len(stats) {
			ch <- prometheus.MustNewConstMetric(steerHits, prometheus.CounterValue, float64(others), p.iface, otherRules, "")
		}
		if m, err := p.st.CacheMisses(); err == nil {
			ch <- prometheus.MustNewConstMetric(steerMisses, prometheus.CounterValue, float64(m.Packets), p.iface)
		}
	}
}

// topRules is the indexes in stats of the n rules with the most hits
// (ties: the higher priority first), in idx's array, and the sum of the
// others' hits. The others' sum only grows, but a rule may move in and
// out of the top: its series then has gaps, and the others' sum takes
// its hits meanwhile.
func topRules(stats []bpf.RuleStat, n int, idx []int) ([]int, uint64) {
	idx = idx[:0]
	for i := range stats {
		idx = append(idx, i)
	}
	if n < 0 || len(stats) <= n {
		return idx, 0
	}
	slices.SortStableFunc(idx, func(a, b int) int { return cmp.Compare(stats[b].Packets, stats[a].Packets) })
	var others uint64
	for _, i := range idx[n:] {
		others += stats[i].Packets
	}
	return idx[:n], others
}

var unboundFrames = prometheus.NewDesc("xdpipe_unbound_frames_total",
	"Frames bound for an AF_XDP socket that arrived on an RX queue without one, so the kernel stack got them: "+
		"RSS spreads flows over queues xdpipe does not serve (bind them all, or steer the flows with ethtool).",
	[]string{"iface", "queue"}, nil)

// unboundMetrics exports the frames that found no socket on their queue.
// Only queues that had some appear: a NIC may have hundreds.
func (d *Daemon) unboundMetrics(ch chan<- prometheus.Metric) {
	ifs, _ := d.Unbound()
	for _, iu := range ifs {
		for _, c := range iu.Unbound {
			ch <- prometheus.MustNewConstMetric(unboundFrames, prometheus.CounterValue, float64(c.Packets), iu.Iface, strconv.Itoa(c.Queue))
		}
	}
}

// ruleName names a steering rule: its name, or prio-<priority>.
func ruleName(r rules.Rule) string {
	if r.Name != "" {
		return r.Name
	}
	return fmt.Sprintf("prio-%d", r.Priority)
}
