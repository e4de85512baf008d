package pipeline

import (
	"strconv"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/xdpipe/xdpipe/xsk"
)

// Collector exports the workers' counters to Prometheus. It reads atomics
// (and XDP_STATISTICS through each port that has Stats) at scrape time, so
// the hot path pays nothing for it.
//
// Metrics, all labelled with queue and, where per socket, iface:
//
//	xdpipe_rx_packets_total, xdpipe_rx_bytes_total, xdpipe_tx_packets_total, xdpipe_tx_bytes_total
//	xdpipe_tx_completed_total, xdpipe_tx_in_flight
//	xdpipe_drops_total{reason}: frames lost: verdict (stages or the
//	    default), bad_output, tx_ring_full, and the XDP_STATISTICS fields
//	    that count frames: xsk_rx_dropped, xsk_rx_invalid_descs,
//	    xsk_tx_invalid_descs, xsk_rx_ring_full
//	xdpipe_xsk_ring_empty_total{ring}: the XDP_STATISTICS fields that count
//	    events, not frames: fill (rx_fill_ring_empty_descs), tx
//	    (tx_ring_empty_descs, always counting on a receive-only daemon)
//	xdpipe_umem_frames{umem, place}: where the frames are (free, app, fill,
//	    rx, tx, completion, kernel): ring occupancy
//	xdpipe_fill_depth: the frames a socket keeps on its fill ring (the
//	    whole ring, or with fill_low what the traffic calls for)
//	xdpipe_burst_size: histogram of non-empty RX burst sizes
//	xdpipe_rx_delay_seconds: histogram of the rx delay, from the XDP
//	    program to the stage chain, of stamped packets (WorkerConfig.RxDelay;
//	    absent when off)
//	xdpipe_worker_passes_total, xdpipe_worker_idle_passes_total, xdpipe_stage_reloads_total
//
// and each stage's own (Metered), labelled with queue, stage (its kind) and
// index (its place in the chain):
//
//	xdpipe_stage_packets_total (count, pcap)
//	xdpipe_stage_errors_total, xdpipe_stage_lost_total
//	    (pcap write failures and frames not captured; rewrite push without room)
//	xdpipe_filter_rule_hits_total{rule}, xdpipe_filter_misses_total
//	xdpipe_sample_sent_total, xdpipe_sample_dropped_total
//	xdpipe_ipfix_records_exported_total, xdpipe_ipfix_records_evicted_total,
//	    xdpipe_ipfix_records_failed_total, xdpipe_ipfix_messages_total,
//	    xdpipe_ipfix_messages_failed_total
type Collector struct {
	mu      sync.Mutex
	workers []*Worker
	umems   map[string]Accounted
	extra   []func(ch chan<- prometheus.Metric)
	// stageDescs are the stage counters' descriptions (stageDesc).
	stageDescs map[*CounterDesc]*prometheus.Desc
}

var _ prometheus.Collector = (*Collector)(nil)

// Accounted is a UMEM that says where its frames are (*xsk.Umem).
type Accounted interface {
	Accounting() xsk.Accounting
}

// NewCollector makes a collector for the workers; umems (name -> UMEM) feed
// the frame-place gauges.
func NewCollector(workers []*Worker, umems map[string]Accounted) *Collector {
	return &Collector{workers: workers, umems: umems}
}

// AddFunc adds metrics produced by f at each scrape (rule hits of the
// steering program, say).
func (c *Collector) AddFunc(f func(ch chan<- prometheus.Metric)) {
	c.mu.Lock()
	c.extra = append(c.extra, f)
	c.mu.Unlock()
}

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(name, help, labels, nil)
}

var (
	mRxPackets  = desc("xdpipe_rx_packets_total", "Frames received.", "iface", "queue")
	mRxBytes    = desc("xdpipe_rx_bytes_total", "Bytes received.", "iface", "queue")
	mTxPackets  = desc("xdpipe_tx_packets_total", "Frames put on the TX ring.", "iface", "queue")
	mTxBytes    = desc("xdpipe_tx_bytes_total", "Bytes put on the TX ring.", "iface", "queue")
	mTxDone     = desc("xdpipe_tx_completed_total", "UMEM frames back from the completion ring (a multi-buffer packet returns one per segment).", "iface", "queue")
	mTxInFlight = desc("xdpipe_tx_in_flight", "UMEM frames on the TX ring or in the kernel, not yet completed.", "iface", "queue")
	mDrops      = desc("xdpipe_drops_total", "Frames dropped, by reason.", "iface", "queue", "reason")
	mRingEmpty  = desc("xdpipe_xsk_ring_empty_total", "Times the kernel found a ring empty (XDP_STATISTICS): fill (no frame to receive into), tx (nothing to send); events, not frames.", "iface", "queue", "ring")
	mUmem       = desc("xdpipe_umem_frames", "UMEM frames by place (ring occupancy).", "umem", "place")
	mFillDepth  = desc("xdpipe_fill_depth", "Frames the socket keeps on its fill ring: the whole ring, or with fill_low what the traffic calls for.", "iface", "queue")
	mBurst      = desc("xdpipe_burst_size", "Size of non-empty RX bursts.", "queue")
	mRxDelay    = desc("xdpipe_rx_delay_seconds", "Time from the XDP program to the stage chain (queueing in the RX ring included), of the frames the program stamped.", "queue")
	mPasses     = desc("xdpipe_worker_passes_total", "Worker passes.", "queue")
	mIdle       = desc("xdpipe_worker_idle_passes_total", "Worker passes that received nothing.", "queue")
	mReloads    = desc("xdpipe_stage_reloads_total", "Stage chains swapped in at run time.", "queue")
)

// stageDesc is the Prometheus description of a stage counter, made at its
// first scrape and kept: labelled queue, stage and index, then its own.
func (c *Collector) stageDesc(d *CounterDesc) *prometheus.Desc {
	pd, ok := c.stageDescs[d]
	if !ok {
		pd = desc(d.Name, d.Help, append([]string{"queue", "stage", "index"}, d.Labels...)...)
		if c.stageDescs == nil {
			c.stageDescs = map[*CounterDesc]*prometheus.Desc{}
		}
		c.stageDescs[d] = pd
	}
	return pd
}

// Describe implements prometheus.Collector (unchecked: label sets vary with
// the stages).
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {}

// statser is a port with XDP_STATISTICS (*xsk.Socket).
type statser interface {
	Stats() (xsk.Statistics, error)
}

func counter(ch chan<- prometheus.Metric, d *prometheus.Desc, v uint64, labels ...string) {
	ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
}

func gauge(ch chan<- prometheus.Metric, d *prometheus.Desc, v float64, labels ...string) {
	ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, w := range c.workers {
		q := strconv.Itoa(w.Queue())
		for i, name := range w.PortNames() {
			ps := w.PortStats(i)
			counter(ch, mRxPackets, ps.RxPackets.Load(), name, q)
			counter(ch, mRxBytes, ps.RxBytes.Load(), name, q)
			segs, done := ps.TxSegments.Load(), ps.TxDone.Load()
			counter(ch, mTxPackets, ps.TxPackets.Load(), name, q)
			counter(ch, mTxBytes, ps.TxBytes.Load(), name, q)
			counter(ch, mTxDone, done, name, q)
			gauge(ch, mTxInFlight, float64(segs-min(done, segs)), name, q)
			counter(ch, mDrops, ps.TxRingFull.Load(), name, q, "tx_ring_full")
			if f, ok := w.ports[i].port.(interface{ FillDepth() uint32 }); ok {
				gauge(ch, mFillDepth, float64(f.FillDepth()), name, q)
			}
			if s, ok := w.ports[i].port.(statser); ok {
				if st, err := s.Stats(); err == nil {
					counter(ch, mDrops, st.RxDropped, name, q, "xsk_rx_dropped")
					counter(ch, mDrops, st.RxInvalidDescs, name, q, "xsk_rx_invalid_descs")
					counter(ch, mDrops, st.TxInvalidDescs, name, q, "xsk_tx_invalid_descs")
					counter(ch, mDrops, st.RxRingFull, name, q, "xsk_rx_ring_full")
					counter(ch, mRingEmpty, st.RxFillRingEmptyDescs, name, q, "fill")
					counter(ch, mRingEmpty, st.TxRingEmptyDescs, name, q, "tx")
				}
			}
		}
		ws := w.Stats()
		counter(ch, mDrops, ws.Dropped.Load(), "", q, "verdict")
		counter(ch, mDrops, ws.BadOutput.Load(), "", q, "bad_output")
		counter(ch, mPasses, ws.Passes.Load(), q)
		counter(ch, mIdle, ws.IdlePasses.Load(), q)
		counter(ch, mReloads, ws.Reloads.Load(), q)
		buckets := make(map[float64]uint64, len(BurstBuckets))
		var cum, count uint64
		var sum float64
		prev := 0
		for i, ub := range BurstBuckets {
			n := ws.Bursts[i].Load()
			cum += n
			count += n
			// The sum is estimated from bucket midpoints (sizes are not
			// recorded one by one).
			sum += float64(n) * float64(prev+1+ub) / 2
			buckets[float64(ub)] = cum
			prev = ub
		}
		ch <- prometheus.MustNewConstHistogram(mBurst, count, sum, buckets, q)
		if d := w.RxDelay(); d != nil {
			ch <- delayHistogram(d, q)
		}
		w.retired.counters(&w.active, func(d *CounterDesc, v uint64, labels []string) {
			counter(ch, c.stageDesc(d), v, append([]string{q}, labels...)...)
		})
	}
	for name, u := range c.umems {
		a := u.Accounting()
		for _, p := range []struct {
			place string
			v     int64
		}{{"free", a.Free}, {"app", a.App}, {"fill", a.Fill}, {"rx", a.RX}, {"tx", a.TX},
			{"completion", a.Completion}, {"kernel", a.Kernel}, {"lost", a.Lost}} {
			gauge(ch, mUmem, float64(p.v), name, p.place)
		}
	}
	for _, f := range c.extra {
		f(ch)
	}
}

// delayHistogram is d as a Prometheus histogram in seconds.
func delayHistogram(d *DelayStats, queue string) prometheus.Metric {
	buckets := make(map[float64]uint64, DelayBuckets)
	var cum uint64
	for i := range DelayBuckets {
		cum += d.Counts[i].Load()
		buckets[float64(DelayBound(i))/1e9] = cum
	}
	cum += d.Counts[DelayBuckets].Load()
	return prometheus.MustNewConstHistogram(mRxDelay, cum, float64(d.SumNanos.Load())/1e9, buckets, queue)
}

// ruleLabel names a rule for metrics: its name, or its priority.
func ruleLabel(prio uint32, name string) string {
	if name != "" {
		return name
	}
	return "prio-" + strconv.FormatUint(uint64(prio), 10)
}
