package master

import (
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"kiln/master/state"
	"kiln/transport/wire"
)

// Metrics records what operators watch, as Prometheus series on the
// registerer given to [NewMetrics]:
//
//	kiln_peers{role}                    connected slaves, clients and admins (gauge)
//	kiln_queue_length                   jobs waiting for a slot (gauge)
//	kiln_jobs_total{status,language}    finished jobs (counter)
//	kiln_dispatch_seconds               submit to assignment (histogram)
//	kiln_job_seconds                    submit to result (histogram)
//	kiln_refusals_total{code}           peers refused or disconnected, by wire code (counter)
//	kiln_bytes_total{kind}              bytes routed: upload (client to master), output (slave to client) (counter)
//	kiln_quarantines_total              slaves quarantined for slave-side failures (counter)
//	kiln_slaves_out{reason}             connected slaves taking no job: quarantined, unhealthy (gauge)
//	kiln_held_upload_bytes              uploaded bytes held in memory, counted as they arrive (gauge)
//	kiln_state_entries_total            durable state: log entries written, one bbolt commit (two fdatasyncs) each (counter; WatchStore)
//	kiln_state_commands_total           durable state: commands in those entries (counter; WatchStore)
//	kiln_slaves{state}                  registered slaves: available, drained, out (gauge; WatchCluster)
//	kiln_capacity_slots                 slots of the slaves that take jobs now (gauge; WatchCluster)
//	kiln_running_jobs                   jobs running on slaves (gauge; WatchCluster)
//	kiln_slave_slots{slave}             one slave's slots (gauge; WatchCluster)
//	kiln_slave_running_jobs{slave}      jobs running on one slave (gauge; WatchCluster)
//	kiln_slave_cpu_percent{slave}       one slave's CPU use, as it last reported it (gauge; WatchCluster)
//	kiln_slave_drained{slave}           1 while an admin has drained the slave (gauge; WatchCluster)
//	kiln_slave_report_age_seconds{slave} time since its last load report (gauge; WatchCluster)
//
// A nil *Metrics records nothing. Its methods are safe for concurrent use.
type Metrics struct {
	peerCount *prometheus.GaugeVec
	jobs      *prometheus.CounterVec
	dispatch  prometheus.Histogram
	e2e       prometheus.Histogram
	refusals  *prometheus.CounterVec
	transfer  *prometheus.CounterVec
	quarant   prometheus.Counter
	queueLen  atomic.Pointer[func() int]
	slavesOut atomic.Pointer[func() (int, int)]
	held      atomic.Pointer[func() int64]
	cluster   atomic.Pointer[func() []SlaveInfo]
	store     atomic.Pointer[func() state.WriteStats]
}

// Bucket bounds of the latency histograms, in seconds: round numbers, so
// that the le labels read as written here.
var (
	dispatchBuckets = []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}
	jobBuckets      = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300}
)

// NewMetrics creates the master's series and registers them on reg (use a
// fresh prometheus.NewRegistry, not the global default). It panics if they
// are already registered there.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		peerCount: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "kiln_peers",
			Help: "Connected peers by role (slave, client, admin)."}, []string{"role"}),
		jobs: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kiln_jobs_total",
			Help: "Finished jobs by result status and language."}, []string{"status", "language"}),
		dispatch: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "kiln_dispatch_seconds",
			Help:    "Time from a job's admission to its assignment to a slave.",
			Buckets: dispatchBuckets}),
		e2e: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "kiln_job_seconds",
			Help:    "Time from a job's admission to its result (end-to-end latency).",
			Buckets: jobBuckets}),
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kiln_refusals_total",
			Help: "Peers refused at admission or disconnected later, by refusal code."}, []string{"code"}),
		transfer: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kiln_bytes_total",
			Help: "Bytes routed by the master, by kind (upload, output)."}, []string{"kind"}),
	}
	queue := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "kiln_queue_length",
		Help: "Jobs waiting for a free slot."}, func() float64 {
		if f := m.queueLen.Load(); f != nil {
			return float64((*f)())
		}
		return 0
	})
	held := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "kiln_held_upload_bytes",
		Help: "Bytes of uploaded files the master holds in memory (pending uploads, queued and running jobs), counted as they arrive."}, func() float64 {
		if f := m.held.Load(); f != nil {
			return float64((*f)())
		}
		return 0
	})
	m.quarant = prometheus.NewCounter(prometheus.CounterOpts{Name: "kiln_quarantines_total",
		Help: "Slaves quarantined for slave-side failures (internal errors, missed deadlines, output over the cap)."})
	out := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "kiln_slaves_out",
		Help: "Connected slaves that take no job now, by reason (quarantined, unhealthy)."}, []string{"reason"})
	storeStat := func(f func(state.WriteStats) uint64) func() float64 {
		return func() float64 {
			if st := m.store.Load(); st != nil {
				return float64(f((*st)()))
			}
			return 0
		}
	}
	entries := prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "kiln_state_entries_total",
		Help: "Log entries the durable state wrote (one bbolt commit, two fdatasyncs, each)."}, storeStat(func(w state.WriteStats) uint64 { return w.Entries }))
	commands := prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "kiln_state_commands_total",
		Help: "Commands in the log entries the durable state wrote (group commit: several per entry)."}, storeStat(func(w state.WriteStats) uint64 { return w.Commands }))
	reg.MustRegister(m.peerCount, m.jobs, m.dispatch, m.e2e, m.refusals, m.transfer, queue, held, m.quarant, entries, commands,
		slavesOutCollector{m, out}, clusterCollector{m})
	for _, r := range []string{wire.RoleSlave, wire.RoleClient, wire.RoleAdmin} {
		m.peerCount.WithLabelValues(r)
	}
	for _, k := range []string{"upload", "output"} {
		m.transfer.WithLabelValues(k)
	}
	return m
}

// WatchQueue makes kiln_queue_length report queueLen (usually
// Server.QueueLen), read at every scrape.
func (m *Metrics) WatchQueue(queueLen func() int) {
	if m != nil {
		m.queueLen.Store(&queueLen)
	}
}

// WatchStore makes the kiln_state_* counters report stats (usually
// state.Store.WriteStats), read at every scrape.
func (m *Metrics) WatchStore(stats func() state.WriteStats) {
	if m != nil {
		m.store.Store(&stats)
	}
}

// WatchHeld makes kiln_held_upload_bytes report held (usually
// Server.HeldBytes), read at every scrape.
func (m *Metrics) WatchHeld(held func() int64) {
	if m != nil {
		m.held.Store(&held)
	}
}

// WatchSlaves makes kiln_slaves_out report out (usually Server.SlavesOut),
// read at every scrape.
func (m *Metrics) WatchSlaves(out func() (quarantined, unhealthy int)) {
	if m != nil {
		m.slavesOut.Store(&out)
	}
}

// WatchCluster makes the capacity and per-slave series report slaves
// (usually Server.Slaves), read at every scrape.
func (m *Metrics) WatchCluster(slaves func() []SlaveInfo) {
	if m != nil {
		m.cluster.Store(&slaves)
	}
}

var (
	descSlaves    = prometheus.NewDesc("kiln_slaves", "Registered slaves by state: available (takes jobs), drained (by an admin), out (quarantined, unhealthy or draining itself).", []string{"state"}, nil)
	descCapacity  = prometheus.NewDesc("kiln_capacity_slots", "Slots of the slaves that take jobs now.", nil, nil)
	descRunning   = prometheus.NewDesc("kiln_running_jobs", "Jobs running on slaves.", nil, nil)
	descSlots     = prometheus.NewDesc("kiln_slave_slots", "Slots of one slave.", []string{"slave"}, nil)
	descSRunning  = prometheus.NewDesc("kiln_slave_running_jobs", "Jobs running on one slave.", []string{"slave"}, nil)
	descCPU       = prometheus.NewDesc("kiln_slave_cpu_percent", "CPU use of one slave, as it last reported it.", []string{"slave"}, nil)
	descDrained   = prometheus.NewDesc("kiln_slave_drained", "1 while an admin has drained the slave.", []string{"slave"}, nil)
	descReportAge = prometheus.NewDesc("kiln_slave_report_age_seconds", "Time since the slave's last load report.", []string{"slave"}, nil)
)

// clusterCollector fills the capacity and per-slave series at each scrape.
type clusterCollector struct{ m *Metrics }

func (c clusterCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descSlaves, descCapacity, descRunning, descSlots, descSRunning, descCPU, descDrained, descReportAge} {
		ch <- d
	}
}

func (c clusterCollector) Collect(ch chan<- prometheus.Metric) {
	var list []SlaveInfo
	if f := c.m.cluster.Load(); f != nil {
		list = (*f)()
	}
	g := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	avail, drained, out, capacity, running := 0, 0, 0, 0, 0
	for _, sl := range list {
		if !sl.Registered {
			continue
		}
		running += sl.Running
		switch {
		case sl.Drained:
			drained++
		case sl.Quarantined || sl.Load.Health != "":
			out++
		default:
			avail++
			capacity += sl.Slots
		}
		g(descSlots, float64(sl.Slots), sl.Name)
		g(descSRunning, float64(sl.Running), sl.Name)
		g(descCPU, sl.Load.CPUPercent, sl.Name)
		g(descDrained, b2f(sl.Drained), sl.Name)
		g(descReportAge, sl.ReportAge.Seconds(), sl.Name)
	}
	g(descSlaves, float64(avail), "available")
	g(descSlaves, float64(drained), "drained")
	g(descSlaves, float64(out), "out")
	g(descCapacity, float64(capacity))
	g(descRunning, float64(running))
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// slavesOutCollector fills kiln_slaves_out at each scrape.
type slavesOutCollector struct {
	m   *Metrics
	vec *prometheus.GaugeVec
}

func (c slavesOutCollector) Describe(ch chan<- *prometheus.Desc) { c.vec.Describe(ch) }

func (c slavesOutCollector) Collect(ch chan<- prometheus.Metric) {
	q, u := 0, 0
	if f := c.m.slavesOut.Load(); f != nil {
		q, u = (*f)()
	}
	c.vec.WithLabelValues("quarantined").Set(float64(q))
	c.vec.WithLabelValues("unhealthy").Set(float64(u))
	c.vec.Collect(ch)
}

func (m *Metrics) quarantined() {
	if m != nil {
		m.quarant.Inc()
	}
}

func (m *Metrics) refused(code string) {
	if m != nil {
		m.refusals.WithLabelValues(code).Inc()
	}
}

func (m *Metrics) peers(role string, delta int) {
	if m != nil {
		m.peerCount.WithLabelValues(role).Add(float64(delta))
	}
}

func (m *Metrics) dispatched(wait time.Duration) {
	if m != nil {
		m.dispatch.Observe(wait.Seconds())
	}
}

func (m *Metrics) finished(lang, status string, e2e time.Duration) {
	if m != nil {
		m.jobs.WithLabelValues(status, lang).Inc()
		m.e2e.Observe(e2e.Seconds())
	}
}

func (m *Metrics) bytes(kind string, n int) {
	if m != nil {
		m.transfer.WithLabelValues(kind).Add(float64(n))
	}
}
