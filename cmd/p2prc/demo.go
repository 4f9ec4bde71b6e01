package main

import (
	"context"
	"io"

	"github.com/p2prc/p2prc/cmd/p2prc/internal/demo"
)

func runDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("demo", "demo", stderr)
	if err := parse(fs, args); err != nil {
		return err
	}
	return demo.Run(ctx, stdout)
}
