package main

import (
	"runtime"
	"runtime/debug"

	"github.com/prometheus/client_golang/prometheus"
)

// buildInfo is what this binary knows of its build: the module version (a
// tag, when built with "go install ...@v1.2.3"; the linker's main.version
// wins when set), the VCS revision Go stamped into it (when built from a
// checkout), and the Go release.
type buildInfo struct {
	Version   string
	Revision  string
	Modified  bool
	GoVersion string
}

// readBuildInfo reads the build information of the running binary.
func readBuildInfo() buildInfo {
	return buildInfoFrom(version, commit, debug.ReadBuildInfo)
}

// buildInfoFrom merges the linker's values with what read reports.
func buildInfoFrom(linkVersion, linkCommit string, read func() (*debug.BuildInfo, bool)) buildInfo {
	b := buildInfo{Version: linkVersion, Revision: linkCommit, GoVersion: runtime.Version()}
	if b.Version == "" {
		b.Version = "dev"
	}
	bi, ok := read()
	if !ok {
		return b
	}
	if bi.GoVersion != "" {
		b.GoVersion = bi.GoVersion
	}
	if b.Version == "dev" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		b.Version = bi.Main.Version
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			if b.Revision == "" {
				b.Revision = s.Value
			}
		case "vcs.modified":
			b.Modified = s.Value == "true"
		}
	}
	return b
}

// String is the one-line version: "v1.2.3 (revision 0123abcd…, modified,
// go1.26.8)", with what is unknown left out.
func (b buildInfo) String() string {
	s := b.Version + " ("
	if b.Revision != "" {
		s += "revision " + b.Revision
		if b.Modified {
			s += ", modified"
		}
		s += ", "
	}
	return s + b.GoVersion + ")"
}

// collector is the srs_mesh_build_info gauge: always 1, with the build in
// its labels, as Prometheus exporters conventionally export it.
func (b buildInfo) collector() prometheus.Collector {
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: ns + "_build_info",
		Help: "Always 1; the labels name the version, VCS revision and Go release of this binary.",
		ConstLabels: prometheus.Labels{
			"version": b.Version, "revision": b.Revision, "goversion": b.GoVersion,
		},
	})
	g.Set(1)
	return g
}
