// helm-library renders many value sets of one chart in one process with Helm's own library
// (helm.sh/helm/v3, the version in go.mod), each exactly as
// `helm template RELEASE CHART_DIR --namespace NS --values FILE` prints it. starmap runs it
// for a cold render when STARMAP_HELM_LIBRARY names it (README, "Build cache"): one process
// instead of a helm process per value set, about 50 times faster.
//
// Usage: helm-library [-workers N] RELEASE NAMESPACE CHART_DIR VALUES_DIR OUT_DIR
//        helm-library -version
//
// Renders each VALUES_DIR/*.yaml. Writes OUT_DIR/<name> for each value set, or OUT_DIR/<name>.error
// with the reason it failed (starmap then runs `helm template` for that set, so its error is
// helm's own). Exits 0 unless the arguments or OUT_DIR are wrong.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"

	"github.com/pkg/errors"

	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/cli"
	"helm.sh/helm/v3/pkg/cli/values"
	"helm.sh/helm/v3/pkg/getter"
)

// render does what `helm template` does for one value set (newTemplateCmd and runInstall in
// cmd/helm of v3.17.3): a client-only dry-run install, then the manifest and the hooks.
func render(settings *cli.EnvSettings, release, namespace, chartDir, valuesFile string) ([]byte, error) {
	client := action.NewInstall(new(action.Configuration))
	client.DryRunOption = "true"
	client.DryRun = true
	client.ReleaseName = release
	client.Replace = true
	client.ClientOnly = true
	client.APIVersions = chartutil.VersionSet(nil)
	cp, err := client.ChartPathOptions.LocateChart(chartDir, settings)
	if err != nil {
		return nil, err
	}
	vals, err := (&values.Options{ValueFiles: []string{valuesFile}}).MergeValues(getter.All(settings))
	if err != nil {
		return nil, err
	}
	// The chart is loaded for every value set, as each helm process does: Run may change it.
	chrt, err := loader.Load(cp)
	if err != nil {
		return nil, err
	}
	switch chrt.Metadata.Type {
	case "", "application":
	default:
		return nil, errors.Errorf("%s charts are not installable", chrt.Metadata.Type)
	}
	if req := chrt.Metadata.Dependencies; req != nil {
		if err := action.CheckDependencies(chrt, req); err != nil {
			return nil, errors.Wrap(err, "An error occurred while checking for chart dependencies. You may need to run `helm dependency build` to fetch missing dependencies")
		}
	}
	client.Namespace = namespace
	rel, err := client.Run(chrt, vals)
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	fmt.Fprintln(&out, strings.TrimSpace(rel.Manifest))
	for _, m := range rel.Hooks {
		fmt.Fprintf(&out, "---\n# Source: %s\n%s\n", m.Path, m.Manifest)
	}
	return out.Bytes(), nil
}

// helmVersion is the version of Helm's module this binary was built with.
func helmVersion() string {
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, m := range info.Deps {
			if m.Path == "helm.sh/helm/v3" {
				return m.Version
			}
		}
	}
	return "unknown"
}

func main() {
	workers := flag.Int("workers", 1, "value sets rendered at once")
	version := flag.Bool("version", false, "print the Helm version this was built with")
	flag.Parse()
	if *version {
		fmt.Println("helm-library, Helm " + helmVersion())
		return
	}
	args := flag.Args()
	if len(args) != 5 {
		fmt.Fprintln(os.Stderr, "usage: helm-library [-workers N] RELEASE NAMESPACE CHART_DIR VALUES_DIR OUT_DIR")
		os.Exit(2)
	}
	release, namespace, chartDir, valuesDir, outDir := args[0], args[1], args[2], args[3], args[4]
	valueFiles, err := filepath.Glob(filepath.Join(valuesDir, "*.yaml"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	settings := cli.New()
	settings.SetNamespace(namespace)
	jobs := make(chan string)
	var failed sync.Once
	var wg sync.WaitGroup
	for w := 0; w < *workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for vf := range jobs {
				target := filepath.Join(outDir, filepath.Base(vf))
				out, err := render(settings, release, namespace, chartDir, vf)
				if err != nil {
					target += ".error"
					out = []byte(err.Error())
				}
				if err := os.WriteFile(target, out, 0o644); err != nil {
					failed.Do(func() { fmt.Fprintf(os.Stderr, "%s: %v\n", target, err) })
					os.Exit(1)
				}
			}
		}()
	}
	for _, vf := range valueFiles {
		jobs <- vf
	}
	close(jobs)
	wg.Wait()
}
