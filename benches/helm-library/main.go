// A measurement, not part of starmap: renders many value sets of one chart in one process
// with Helm's own library (helm.sh/helm/v3, the version .ci/run installs), each in the exact
// format of `helm template RELEASE CHART --namespace NS --values FILE`, to compare with
// running one helm process per value set. See measure.sh and README.md ("Build cache").
//
// Usage: helm-library [-workers N] RELEASE NAMESPACE CHART_DIR OUT_DIR VALUES_FILE...
// Writes OUT_DIR/<basename of VALUES_FILE>.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/cli"
	"helm.sh/helm/v3/pkg/cli/values"
	"helm.sh/helm/v3/pkg/getter"
)

// render does what `helm template` does for one value set (cmd/helm/template.go and
// install.go of v3.17.3): a client-only dry-run install, then the manifest and the hooks.
func render(settings *cli.EnvSettings, release, namespace, chartDir, valuesFile string) ([]byte, error) {
	client := action.NewInstall(new(action.Configuration))
	client.DryRunOption = "true"
	client.DryRun = true
	client.ReleaseName = release
	client.Replace = true
	client.ClientOnly = true
	client.APIVersions = chartutil.VersionSet(nil)
	client.Namespace = namespace
	// The chart is loaded for every value set, as each helm process does: Run may change it.
	chrt, err := loader.Load(chartDir)
	if err != nil {
		return nil, err
	}
	vals, err := (&values.Options{ValueFiles: []string{valuesFile}}).MergeValues(getter.All(settings))
	if err != nil {
		return nil, err
	}
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

func main() {
	workers := flag.Int("workers", 1, "value sets rendered at once")
	flag.Parse()
	args := flag.Args()
	if len(args) < 5 {
		fmt.Fprintln(os.Stderr, "usage: helm-library [-workers N] RELEASE NAMESPACE CHART_DIR OUT_DIR VALUES_FILE...")
		os.Exit(2)
	}
	release, namespace, chartDir, outDir := args[0], args[1], args[2], args[3]
	settings := cli.New()
	jobs := make(chan string)
	var failed sync.Once
	var wg sync.WaitGroup
	for w := 0; w < *workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for vf := range jobs {
				out, err := render(settings, release, namespace, chartDir, vf)
				if err == nil {
					err = os.WriteFile(filepath.Join(outDir, filepath.Base(vf)), out, 0o644)
				}
				if err != nil {
					failed.Do(func() { fmt.Fprintf(os.Stderr, "%s: %v\n", vf, err) })
					os.Exit(1)
				}
			}
		}()
	}
	for _, vf := range args[4:] {
		jobs <- vf
	}
	close(jobs)
	wg.Wait()
}
