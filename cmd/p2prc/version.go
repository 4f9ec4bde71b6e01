package main

import (
	"fmt"
	"io"
	"runtime/debug"

	"github.com/p2prc/p2prc/cmd/p2prc/internal/status"
)

func runVersion(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("version", "version", stderr)
	if err := parse(fs, args); err != nil {
		return err
	}
	_, err := fmt.Fprintln(stdout, versionString())
	return err
}

// versionString is the module version and the commit the binary was built from.
func versionString() string {
	b := buildInfo()
	if b.Version == "" {
		return "p2prc (unknown version)"
	}
	v := "p2prc " + b.Version
	if b.Commit != "" {
		v += " commit " + b.Commit
	}
	return v + " " + b.GoVersion
}

// buildInfo says which p2prc this is, from what the Go toolchain recorded;
// Version is empty if it recorded nothing.
func buildInfo() status.Build {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return status.Build{}
	}
	b := status.Build{Version: bi.Main.Version, GoVersion: bi.GoVersion}
	var modified string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			b.Commit = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				modified = "+modified"
			}
		}
	}
	if b.Commit != "" {
		b.Commit += modified
	}
	return b
}
