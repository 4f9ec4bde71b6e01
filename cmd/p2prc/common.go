package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/pflag"

	"github.com/p2prc/p2prc/registry/secret"
)

// tokenEnv names the environment variable that may carry the token, so it
// need not appear on a command line (where ps shows it).
const tokenEnv = "P2PRC_TOKEN"

// newFlags returns a flag set for one subcommand whose --help prints the
// flags with their defaults.
func newFlags(name, synopsis string, stderr io.Writer) *pflag.FlagSet {
	fs := pflag.NewFlagSet(name, pflag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.SortFlags = false
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: p2prc %s\n\nFlags:\n%s", synopsis, fs.FlagUsages())
	}
	return fs
}

// stateFlag adds --state.
func stateFlag(fs *pflag.FlagSet) *string {
	return fs.String("state", "", "folder holding this process's files (created 0700 if missing); default $P2PRC, else $HOME/.p2prc")
}

// daemonFlags are the flags a relay and a node share: the state dir,
// P2PRC's IP table, logging and metrics.
type daemonFlags struct {
	state, ipTable *string
	log            logFlags
	metrics        metricsFlags
}

func (d *daemonFlags) add(fs *pflag.FlagSet) {
	d.state = stateFlag(fs)
	d.ipTable = ipTableFlag(fs)
	d.log.add(fs)
	d.metrics.add(fs)
}

// stateDir resolves and creates the state dir.
func stateDir(flag string) (string, error) {
	dir := flag
	if dir == "" {
		dir = os.Getenv("P2PRC")
	}
	if dir == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("no --state given and no home directory: %w", err)
		}
		dir = filepath.Join(home, ".p2prc")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("creating the state dir: %w", err)
	}
	return dir, nil
}

// tokenFlags adds --token and --token-file.
type tokenFlags struct{ token, file string }

func (t *tokenFlags) add(fs *pflag.FlagSet) {
	fs.StringVar(&t.token, "token", "", "shared secret (visible in ps; prefer --token-file or $"+tokenEnv+")")
	fs.StringVar(&t.file, "token-file", "", "file holding the shared secret")
}

// load returns the token from the flags or the environment; ok is false if
// none was given.
func (t *tokenFlags) load() (token []byte, ok bool, err error) {
	switch {
	case t.token != "" && t.file != "":
		return nil, false, errors.New("give --token or --token-file, not both")
	case t.file != "":
		b, err := secret.ReadToken(t.file)
		return b, err == nil, err
	case t.token != "":
		return []byte(t.token), true, nil
	}
	if env := strings.TrimSpace(os.Getenv(tokenEnv)); env != "" {
		return []byte(env), true, nil
	}
	return nil, false, nil
}

// logFlags adds --log-level and --log-format.
type logFlags struct{ level, format string }

func (l *logFlags) add(fs *pflag.FlagSet) {
	fs.StringVar(&l.level, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&l.format, "log-format", "text", "text or json")
}

func (l *logFlags) logger(w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(l.level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: use debug, info, warn or error", l.level)
	}
	opts := &slog.HandlerOptions{Level: level}
	switch l.format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: use text or json", l.format)
}

// parse parses args, refusing stray positional arguments.
func parse(fs *pflag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q; see p2prc %s --help", fs.Arg(0), fs.Name())
	}
	return nil
}
