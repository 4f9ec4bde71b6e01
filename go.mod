module github.com/p2prc/p2prc

go 1.26

require (
	github.com/hashicorp/yamux v0.1.2
	github.com/spf13/pflag v1.1.0
)
