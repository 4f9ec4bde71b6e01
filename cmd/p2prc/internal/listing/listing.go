// Package listing prints p2prc's files as aligned tables a person can read.
package listing

import (
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/p2prc/p2prc/registry"
)

// Mappings prints an aligned table of mappings a person can read.
func Mappings(w io.Writer, list []registry.Mapping, now time.Time) {
	if len(list) == 0 {
		fmt.Fprintln(w, "no mappings")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TYPE\tPUBLIC\tLOCAL\tNODE\tOWNER\tAGE\tLAST SEEN")
	for _, m := range list {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", m.Type, m.PublicAddr(), dash(m.Local), dash(m.NodeName),
			dash(short(m.Owner)), age(now, m.Created), age(now, m.LastSeen))
	}
	tw.Flush()
}

func short(id string) string {
	if len(id) > 8 {
		return id[:8]
	}
	return id
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// age says how long ago t was, to the nearest unit a person cares about.
func age(now, t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := now.Sub(t)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24))
}
