package main

import (
	"fmt"
	"io"
	"runtime/debug"
)

func runVersion(args []string, stdout io.Writer) error {
	if len(args) > 0 {
		return fmt.Errorf("version takes no arguments")
	}
	_, err := fmt.Fprintln(stdout, versionString())
	return err
}

// versionString is the module version and the commit the binary was built from.
func versionString() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "p2prc (unknown version)"
	}
	v := "p2prc " + bi.Main.Version
	var rev, modified string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				modified = "+modified"
			}
		}
	}
	if rev != "" {
		v += " commit " + rev + modified
	}
	return v + " " + bi.GoVersion
}
