package status

import (
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/p2prc/p2prc/mux"
	"github.com/p2prc/p2prc/tunnel"
)

// Metrics is the Prometheus side of a relay or a node. It counts events as
// the relay or node's tunnel.Observer, and reads the rest — sessions,
// mappings, connections, bytes — from the Source at each scrape, so nothing
// is counted twice and a mapping's series go when the mapping does.
type Metrics struct {
	reg *prometheus.Registry

	sessionsOpened prometheus.Counter
	grants         *prometheus.CounterVec
	refusals       *prometheus.CounterVec
	authFailures   prometheus.Counter
	reconnects     prometheus.Counter
	handshakes     prometheus.Histogram
}

var _ tunnel.Observer = (*Metrics)(nil)

// handshakeBuckets span a handshake on loopback (sub-millisecond) to one
// over a slow intercontinental link (a few round trips of 300 ms and more).
var handshakeBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// Build says which p2prc runs.
type Build struct {
	Version   string // the module version, "(devel)" for a local build
	Commit    string // the VCS revision, "+modified" if the tree was; may be empty
	GoVersion string
}

// NewMetrics returns metrics for a relay or a node built as b (exported as
// p2prc_build_info), with Go's and the process's own metrics.
func NewMetrics(b Build) *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		sessionsOpened: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "p2prc_sessions_opened_total",
			Help: "Sessions authenticated: nodes that connected (relay), or connections to the relay (node).",
		}),
		grants: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "p2prc_grants_total",
			Help: "Ports granted (relay) or grants received (node), by type.",
		}, []string{"type"}),
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "p2prc_refusals_total",
			Help: "Requests for a port refused (relay) or refusals received (node), by reason.",
		}, []string{"reason"}),
		authFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "p2prc_auth_failures_total",
			Help: "Handshakes that failed on the token: a node without the right token (relay), or a relay that refused us or could not prove it holds the token (node).",
		}),
		reconnects: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "p2prc_reconnects_total",
			Help: "Times the node lost or could not reach its relay and set out to try again.",
		}),
		handshakes: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "p2prc_handshake_duration_seconds",
			Help:    "How long successful handshakes took, from the node's hello to the relay's welcome.",
			Buckets: handshakeBuckets,
		}),
	}
	// Series a dashboard expects from the start, at zero.
	for _, t := range []string{"tcp", "udp"} {
		m.grants.WithLabelValues(t)
	}
	for _, c := range []mux.ErrorCode{mux.CodeOutOfRange, mux.CodeOwned, mux.CodeInUse, mux.CodeExhausted, mux.CodeLimit, mux.CodeBusy} {
		m.refusals.WithLabelValues(string(c))
	}
	build := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "p2prc_build_info",
		Help:        "Always 1; the labels say which p2prc runs.",
		ConstLabels: prometheus.Labels{"version": labelValue(b.Version), "revision": labelValue(b.Commit), "goversion": labelValue(b.GoVersion)},
	})
	build.Set(1)
	m.reg.MustRegister(m.sessionsOpened, m.grants, m.refusals, m.authFailures, m.reconnects, m.handshakes, build,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Watch exports src's state at each scrape. Call it once, before serving.
func (m *Metrics) Watch(src Source) {
	m.reg.MustRegister(&stateCollector{src: src})
}

// Registry is where the metrics are registered, for promhttp.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// The tunnel.Observer methods.

func (m *Metrics) SessionOpened()         { m.sessionsOpened.Inc() }
func (m *Metrics) Granted(network string) { m.grants.WithLabelValues(labelValue(network)).Inc() }
func (m *Metrics) Refused(code mux.ErrorCode) {
	m.refusals.WithLabelValues(labelValue(string(code))).Inc()
}
func (m *Metrics) AuthFailed()               { m.authFailures.Inc() }
func (m *Metrics) Reconnecting()             { m.reconnects.Inc() }
func (m *Metrics) Handshake(d time.Duration) { m.handshakes.Observe(d.Seconds()) }

// mappingLabels name one mapping's series. "node" and "local" come from
// the node: a name it chose and the target it asked for.
var mappingLabels = []string{"type", "port", "node", "local"}

var (
	descSessions = prometheus.NewDesc("p2prc_sessions",
		"Sessions up now: connected nodes (relay), or 1 while connected to the relay (node).", nil, nil)
	descMappings = prometheus.NewDesc("p2prc_mappings",
		"Mappings by type, and whether their node is connected; a disconnected node's ports stay reserved while its lease lasts.",
		[]string{"type", "state"}, nil)
	descConns = prometheus.NewDesc("p2prc_visitor_connections",
		"Visitor TCP connections open now, by mapping.", mappingLabels, nil)
	descVisits = prometheus.NewDesc("p2prc_visitor_connections_total",
		"Visitor TCP connections carried, by mapping.", mappingLabels, nil)
	descFlows = prometheus.NewDesc("p2prc_udp_flows",
		"UDP flows (one per visitor address) live now, by mapping.", mappingLabels, nil)
	descBytes = prometheus.NewDesc("p2prc_mapping_bytes_total",
		`Bytes carried through a mapping: direction "in" from visitors to the node's local service, "out" back to visitors. Counted as they flow.`,
		append(mappingLabels[:len(mappingLabels):len(mappingLabels)], "direction"), nil)
)

// stateCollector turns a Status snapshot into metrics at scrape time.
type stateCollector struct{ src Source }

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descSessions, descMappings, descConns, descVisits, descFlows, descBytes} {
		ch <- d
	}
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.src.Status()
	send(ch, descSessions, prometheus.GaugeValue, float64(st.Sessions()))
	mappings := map[[2]string]int{
		{"tcp", "connected"}: 0, {"tcp", "disconnected"}: 0, {"udp", "connected"}: 0, {"udp", "disconnected"}: 0,
	}
	for _, nd := range st.Nodes {
		state := "disconnected"
		if nd.Connected {
			state = "connected"
		}
		for _, m := range nd.Mappings {
			typ := strings.ToLower(m.Type)
			mappings[[2]string{typ, state}]++
			l := []string{typ, strconv.Itoa(m.Port), labelValue(nd.Name), labelValue(m.Local)}
			tr := m.Traffic
			if typ == "udp" {
				send(ch, descFlows, prometheus.GaugeValue, float64(tr.Flows), l...)
			} else {
				send(ch, descConns, prometheus.GaugeValue, float64(tr.Connections), l...)
				send(ch, descVisits, prometheus.CounterValue, float64(tr.Visits), l...)
			}
			send(ch, descBytes, prometheus.CounterValue, float64(tr.BytesIn), append(l, "in")...)
			send(ch, descBytes, prometheus.CounterValue, float64(tr.BytesOut), append(l, "out")...)
		}
	}
	for k, n := range mappings {
		send(ch, descMappings, prometheus.GaugeValue, float64(n), labelValue(k[0]), k[1])
	}
}

// send emits one sample. A sample that cannot be made (it cannot, with
// labels made valid) is dropped rather than failing the whole scrape.
func send(ch chan<- prometheus.Metric, d *prometheus.Desc, t prometheus.ValueType, v float64, labels ...string) {
	if m, err := prometheus.NewConstMetric(d, t, v, labels...); err == nil {
		ch <- m
	}
}

// labelValue makes a peer's string a valid label value: UTF-8, and short.
func labelValue(s string) string {
	const max = 256
	s = strings.ToValidUTF8(s, "\uFFFD")
	if len(s) > max {
		s = strings.ToValidUTF8(s[:max], "")
	}
	return s
}
