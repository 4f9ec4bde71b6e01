package bench

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
)

// Report is a run's figures. Its JSON form (--json) is for scripts; the
// field names are stable.
type Report struct {
	Started     time.Time  `json:"started"`
	Machine     string     `json:"machine"`
	Duration    string     `json:"duration"` // per workload and path, each round
	Rounds      int        `json:"rounds"`
	Concurrency int        `json:"concurrency"`
	OpenConns   int        `json:"open_connections"`
	Relay       string     `json:"relay"`        // "local", or the remote relay's HOST:PORT
	Modes       []string   `json:"modes"`        // the relayed columns: each mode, with its GOMAXPROCS unless Go's default; "forwarders" last with --forwarders
	LoadAverage [2]float64 `json:"load_average"` // one-minute load average at the start and the end
	Rows        []Row      `json:"rows"`
	Notes       []string   `json:"notes,omitempty"`
}

// Row is one measured quantity of a workload, on every path. With more
// than one round, each figure is the median of the rounds, and each
// comparison the median of the rounds' comparisons.
type Row struct {
	Workload string             `json:"workload"`
	Title    string             `json:"title"`
	Metric   string             `json:"metric"`
	Direct   *float64           `json:"direct,omitempty"`
	Relay    map[string]float64 `json:"relay,omitempty"`  // by mode
	Ratio    map[string]float64 `json:"ratio,omitempty"`  // relay ÷ direct, by mode
	Points   map[string]float64 `json:"points,omitempty"` // relay − direct, for percentages, by mode

	compare compare
	rounds  map[string][]float64 // each round's figure, by path
}

func newReport(cfg Config, ws []workload) *Report {
	r := &Report{
		Started:     time.Now(),
		Machine:     machine(),
		Duration:    cfg.Duration.String(),
		Rounds:      cfg.Rounds,
		Concurrency: cfg.Concurrency,
		OpenConns:   cfg.OpenConns,
		Relay:       cmp.Or(cfg.Relay, "local"),
	}
	r.LoadAverage[0] = loadAverage()
	for _, v := range cfg.variants() {
		r.Modes = append(r.Modes, v.name)
	}
	if cfg.Forwarders {
		r.Modes = append(r.Modes, forwardersPath)
	}
	return r
}

// add records one run (a round) of w on the path named path.
func (r *Report) add(w workload, path string, res result) {
	for _, f := range res.figures {
		row := r.row(w, f)
		if row.rounds == nil {
			row.rounds = make(map[string][]float64)
		}
		row.rounds[path] = append(row.rounds[path], f.value)
	}
	if res.note != "" {
		r.note(fmt.Sprintf("%s via %s: %s", w.name, path, res.note))
	}
}

func (r *Report) row(w workload, f figure) *Row {
	for i := range r.Rows {
		if r.Rows[i].Workload == w.name && r.Rows[i].Metric == f.metric {
			return &r.Rows[i]
		}
	}
	r.Rows = append(r.Rows, Row{Workload: w.name, Title: w.title, Metric: f.metric, compare: f.compare})
	return &r.Rows[len(r.Rows)-1]
}

func (r *Report) note(s string) { r.Notes = append(r.Notes, s) }

// finish takes the medians, computes the comparisons and notes the load
// at the end.
func (r *Report) finish() {
	r.LoadAverage[1] = loadAverage()
	for i := range r.Rows {
		row := &r.Rows[i]
		direct := row.rounds["direct"]
		for path, vs := range row.rounds {
			if path == "direct" {
				v := median(vs)
				row.Direct = &v
				continue
			}
			if row.Relay == nil {
				row.Relay = make(map[string]float64)
			}
			row.Relay[path] = median(vs)
			if len(direct) != len(vs) {
				continue
			}
			var cmps []float64
			for j, v := range vs {
				switch {
				case row.compare == byRatio && direct[j] > 0:
					cmps = append(cmps, v/direct[j])
				case row.compare == byPoints:
					cmps = append(cmps, v-direct[j])
				}
			}
			if len(cmps) == 0 {
				continue
			}
			if row.compare == byRatio {
				if row.Ratio == nil {
					row.Ratio = make(map[string]float64)
				}
				row.Ratio[path] = median(cmps)
			} else {
				if row.Points == nil {
					row.Points = make(map[string]float64)
				}
				row.Points[path] = median(cmps)
			}
		}
	}
}

// median returns the middle value of vs (the mean of the middle two when
// their number is even).
func median(vs []float64) float64 {
	s := slices.Sorted(slices.Values(vs))
	n := len(s)
	if n == 0 {
		return 0
	}
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// WriteJSON writes the report as indented JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteTable writes the report as a table a person reads: for each
// workload its figures directly, through each mode's relay, and the ratio.
func (r *Report) WriteTable(w io.Writer) error {
	var b strings.Builder
	rounds := ""
	if r.Rounds > 1 {
		rounds = fmt.Sprintf(" x %d rounds (medians)", r.Rounds)
	}
	fmt.Fprintf(&b, "p2prc bench: %s per workload and path%s, %d concurrent connections; %s; load %.2f -> %.2f\n",
		r.Duration, rounds, r.Concurrency, r.Machine, r.LoadAverage[0], r.LoadAverage[1])
	where := "relay and node: separate processes on this machine"
	if r.Relay != "local" {
		where = "relay: " + r.Relay + "; node: a process on this machine"
	}
	fmt.Fprintf(&b, "%s; ratio = relay / direct (higher is better for rates, lower for times)\n\n", where)

	head := []string{"workload", "metric", "direct"}
	for _, m := range r.Modes {
		if m == forwardersPath {
			head = append(head, "via 2 forwarders", "ratio")
			continue
		}
		head = append(head, "via relay ("+m+")", "ratio")
	}
	cells := [][]string{head}
	last := ""
	for _, row := range r.Rows {
		title := row.Title
		if row.Workload == last {
			title = ""
		}
		last = row.Workload
		line := []string{title, row.Metric, number(row.Direct)}
		for _, m := range r.Modes {
			v, ok := row.Relay[m]
			if !ok {
				line = append(line, "-", "")
				continue
			}
			cmp := ""
			if x, ok := row.Ratio[m]; ok {
				cmp = fmt.Sprintf("%.2f", x)
			} else if x, ok := row.Points[m]; ok {
				cmp = fmt.Sprintf("%+.1f pt", x)
			}
			line = append(line, number(&v), cmp)
		}
		cells = append(cells, line)
	}
	writeColumns(&b, cells)
	for _, n := range r.Notes {
		fmt.Fprintf(&b, "note: %s\n", n)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// number formats a figure with three significant digits or so; nil is "-".
func number(v *float64) string {
	switch {
	case v == nil:
		return "-"
	case *v >= 1000:
		return fmt.Sprintf("%.0f", *v)
	case *v >= 100:
		return fmt.Sprintf("%.1f", *v)
	case *v >= 10:
		return fmt.Sprintf("%.2f", *v)
	}
	return fmt.Sprintf("%.3f", *v)
}

// writeColumns writes cells as columns: the first two left-aligned, the
// figures right-aligned.
func writeColumns(b *strings.Builder, cells [][]string) {
	var width []int
	for _, line := range cells {
		for i, c := range line {
			if i >= len(width) {
				width = append(width, 0)
			}
			width[i] = max(width[i], len([]rune(c)))
		}
	}
	for _, line := range cells {
		var s strings.Builder
		for i, c := range line {
			pad := strings.Repeat(" ", width[i]-len([]rune(c)))
			if i < 2 {
				s.WriteString(c + pad + "  ")
			} else {
				s.WriteString(pad + c + "  ")
			}
		}
		b.WriteString(strings.TrimRight(s.String(), " ") + "\n")
	}
}
