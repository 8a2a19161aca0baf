//go:build tools

// Package tools keeps Argo CD's multi-call binary in the module graph so that go.sum covers
// it. Nothing here is compiled into starmap.
package tools

import (
	_ "github.com/argoproj/argo-cd/v3/cmd"
)
