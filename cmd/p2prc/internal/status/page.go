package status

import (
	"bytes"
	_ "embed"
	"fmt"
	"html/template"
	"net/http"
	"time"

	"github.com/p2prc/p2prc/tunnel"
)

// The page is rendered on the server, complete without script; it reloads
// itself with a meta refresh. html/template escapes what peers chose (node
// names, local targets), and the Content-Security-Policy forbids script
// and anything from elsewhere in case something slipped through.
//
//go:embed page.html
var pageHTML string

var page = template.Must(template.New("page").Funcs(template.FuncMap{
	"bytes":    formatBytes,
	"duration": func(s float64) string { return formatDuration(time.Duration(s * float64(time.Second))) },
	"since":    func(now, t time.Time) string { return formatDuration(now.Sub(t)) },
	"mappings": func(nodes []tunnel.NodeStatus) int {
		n := 0
		for _, nd := range nodes {
			n += len(nd.Mappings)
		}
		return n
	},
}).Parse(pageHTML))

const pageCSP = "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

func servePage(w http.ResponseWriter, r Report) {
	var buf bytes.Buffer
	if err := page.Execute(&buf, r); err != nil {
		http.Error(w, "rendering the status page: "+err.Error(), http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", pageCSP)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-store")
	w.Write(buf.Bytes())
}

// formatBytes says n in the largest binary unit that keeps it ≥ 1.
func formatBytes(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	v, i := float64(n)/unit, 0
	for v >= unit && i < 5 {
		v /= unit
		i++
	}
	return fmt.Sprintf("%.1f %ciB", v, "KMGTPE"[i])
}

// formatDuration says d in its two largest units: 3d 4h, 2h 5m, 4m 10s, 12s.
func formatDuration(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	s := int64(d / time.Second)
	days, hours, mins, secs := s/86400, s/3600%24, s/60%60, s%60
	switch {
	case days > 0:
		return fmt.Sprintf("%dd %dh", days, hours)
	case hours > 0:
		return fmt.Sprintf("%dh %dm", hours, mins)
	case mins > 0:
		return fmt.Sprintf("%dm %ds", mins, secs)
	}
	return fmt.Sprintf("%ds", secs)
}
