//go:build tools

// Package tools keeps the Flux controllers in the module graph so that go.sum covers them.
package tools

import (
	_ "github.com/fluxcd/kustomize-controller"
	_ "github.com/fluxcd/source-controller"
)
