package e2e

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"sigs.k8s.io/yaml"
)

// manifests holds every object of statefulset/, decoded strictly into the
// real Kubernetes API types.
type manifests struct {
	statefulSets []appsv1.StatefulSet
	deployments  []appsv1.Deployment
	services     []corev1.Service
	configMaps   []corev1.ConfigMap
	secrets      []corev1.Secret
	pdbs         []policyv1.PodDisruptionBudget
	policies     []networkingv1.NetworkPolicy
}

func loadManifests(t *testing.T) manifests {
	t.Helper()
	files, err := filepath.Glob("../statefulset/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests: %v", err)
	}
	var m manifests
	for _, f := range files {
		if filepath.Base(f) == "kustomization.yaml" {
			continue
		}
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, doc := range bytes.Split(data, []byte("\n---\n")) {
			if len(bytes.TrimSpace(doc)) == 0 {
				continue
			}
			var meta struct {
				Kind string `json:"kind"`
			}
			if err := yaml.Unmarshal(doc, &meta); err != nil {
				t.Fatalf("%s#%d: %v", f, i, err)
			}
			var target any
			switch meta.Kind {
			case "StatefulSet":
				m.statefulSets = append(m.statefulSets, appsv1.StatefulSet{})
				target = &m.statefulSets[len(m.statefulSets)-1]
			case "Deployment":
				m.deployments = append(m.deployments, appsv1.Deployment{})
				target = &m.deployments[len(m.deployments)-1]
			case "Service":
				m.services = append(m.services, corev1.Service{})
				target = &m.services[len(m.services)-1]
			case "ConfigMap":
				m.configMaps = append(m.configMaps, corev1.ConfigMap{})
				target = &m.configMaps[len(m.configMaps)-1]
			case "Secret":
				m.secrets = append(m.secrets, corev1.Secret{})
				target = &m.secrets[len(m.secrets)-1]
			case "PodDisruptionBudget":
				m.pdbs = append(m.pdbs, policyv1.PodDisruptionBudget{})
				target = &m.pdbs[len(m.pdbs)-1]
			case "NetworkPolicy":
				m.policies = append(m.policies, networkingv1.NetworkPolicy{})
				target = &m.policies[len(m.policies)-1]
			default:
				t.Fatalf("%s#%d: unexpected kind %q", f, i, meta.Kind)
			}
			if err := yaml.UnmarshalStrict(doc, target); err != nil {
				t.Fatalf("%s#%d (%s): strict decode: %v", f, i, meta.Kind, err)
			}
		}
	}
	// Every file the kustomization lists exists, and every manifest is listed.
	k, err := os.ReadFile("../statefulset/kustomization.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var kust struct {
		Resources []string `json:"resources"`
	}
	if err := yaml.Unmarshal(k, &kust); err != nil {
		t.Fatal(err)
	}
	listed := map[string]bool{}
	for _, r := range kust.Resources {
		listed[r] = true
		if _, err := os.Stat(filepath.Join("../statefulset", r)); err != nil {
			t.Errorf("kustomization lists missing %s", r)
		}
	}
	for _, f := range files {
		if b := filepath.Base(f); b != "kustomization.yaml" && !listed[b] {
			t.Errorf("%s is not listed in kustomization.yaml", b)
		}
	}
	return m
}

// serveFlags returns the flags of `srs-mesh serve` with their defaults, as
// resolvedDefaults are the ports of the flags whose default address serve
// picks at start (loopback for a lone node; see the flags' help).
var resolvedDefaults = map[string]string{"gossip-addr": ":7946", "raft-addr": ":7947", "system-api": ":12025"}

// its --help prints them.
func serveFlags(t *testing.T) map[string]string {
	t.Helper()
	out, err := exec.Command(binary, "serve", "--help").CombinedOutput()
	if err != nil {
		t.Fatalf("serve --help: %v\n%s", err, out)
	}
	flags := map[string]string{}
	re := regexp.MustCompile(`^\s+(?:-\w, )?--([a-z0-9-]+)(?: \S+)?\s+.*?(?:\(default "?([^")]*)"?\))?$`)
	for _, line := range strings.Split(string(out), "\n") {
		if m := re.FindStringSubmatch(line); m != nil {
			flags[m[1]] = m[2]
		}
	}
	if len(flags) < 10 {
		t.Fatalf("could not parse serve flags from:\n%s", out)
	}
	return flags
}

func TestManifests(t *testing.T) {
	m := loadManifests(t)
	if len(m.statefulSets) != 1 || len(m.pdbs) != 1 {
		t.Fatalf("want one StatefulSet and one PDB, got %d and %d", len(m.statefulSets), len(m.pdbs))
	}
	sts := m.statefulSets[0]
	flags := serveFlags(t)
	pod := sts.Spec.Template
	podLabels := pod.Labels

	if sts.Spec.Replicas == nil || *sts.Spec.Replicas != 3 {
		t.Errorf("replicas = %v, want 3", sts.Spec.Replicas)
	}
	if sts.Spec.PodManagementPolicy != appsv1.ParallelPodManagement {
		t.Errorf("podManagementPolicy = %q, want Parallel", sts.Spec.PodManagementPolicy)
	}
	if u := sts.Spec.UpdateStrategy; u.Type != appsv1.RollingUpdateStatefulSetStrategyType || sts.Spec.MinReadySeconds < 1 {
		t.Errorf("updateStrategy = %+v, minReadySeconds %d: want RollingUpdate, gated on readiness", u, sts.Spec.MinReadySeconds)
	}
	if len(sts.Spec.VolumeClaimTemplates) != 1 {
		t.Fatalf("want one volumeClaimTemplate")
	}
	var c *corev1.Container
	for i := range pod.Spec.Containers {
		if pod.Spec.Containers[i].Name == "srs-mesh" {
			c = &pod.Spec.Containers[i]
		}
	}
	if c == nil {
		t.Fatal("no srs-mesh container")
	}
	if len(c.Args) == 0 || c.Args[0] != "serve" {
		t.Fatalf("container args must start with serve: %v", c.Args)
	}

	// Every argument names a real flag; collect their values.
	args := map[string][]string{}
	for _, a := range c.Args[1:] {
		name, value, ok := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		if !strings.HasPrefix(a, "--") || !ok {
			t.Errorf("argument %q is not --flag=value", a)
			continue
		}
		if _, known := flags[name]; !known {
			t.Errorf("argument %q names no flag of srs-mesh serve", a)
		}
		args[name] = append(args[name], value)
	}
	// Environment variables SRS_MESH_* name real flags too.
	for _, e := range c.Env {
		if name, ok := strings.CutPrefix(e.Name, "SRS_MESH_"); ok {
			flag := strings.ToLower(strings.ReplaceAll(name, "_", "-"))
			if _, known := flags[flag]; !known {
				t.Errorf("env %s names no flag of srs-mesh serve", e.Name)
			}
		}
	}
	if got := args["node-id"]; len(got) != 1 || got[0] != "$(POD_NAME)" {
		t.Errorf("--node-id = %v, want $(POD_NAME)", got)
	}
	if got := args["advertise-addr"]; len(got) != 1 || got[0] != "$(POD_IP)" {
		t.Errorf("--advertise-addr = %v, want $(POD_IP)", got)
	}
	if got := args["bootstrap-expect"]; len(got) != 1 || got[0] != fmt.Sprint(*sts.Spec.Replicas) {
		t.Errorf("--bootstrap-expect = %v, want the replica count", got)
	}
	if got := args["data-dir"]; len(got) != 1 || !mountedAt(c, sts.Spec.VolumeClaimTemplates[0].Name, got[0]) {
		t.Errorf("--data-dir %v is not the volumeClaimTemplate's mount", got)
	}
	envFrom := map[string]string{}
	for _, e := range c.Env {
		if e.ValueFrom != nil && e.ValueFrom.FieldRef != nil {
			envFrom[e.Name] = e.ValueFrom.FieldRef.FieldPath
		}
	}
	if envFrom["POD_NAME"] != "metadata.name" || envFrom["POD_IP"] != "status.podIP" || envFrom["POD_NAMESPACE"] != "metadata.namespace" {
		t.Errorf("downward API env = %v", envFrom)
	}
	// The zone comes from the pod's topology label, so that voters spread
	// over zones; the voter bound is explicit and odd.
	if got := envFrom["SRS_MESH_ZONE"]; got != "metadata.labels['topology.kubernetes.io/zone']" {
		t.Errorf("SRS_MESH_ZONE comes from %q, want the topology.kubernetes.io/zone label", got)
	}
	if got := args["raft-voters"]; len(got) != 1 || got[0] != flags["raft-voters"] {
		t.Errorf("--raft-voters = %v, want the default %q", got, flags["raft-voters"])
	}
	spread := false
	for _, c := range sts.Spec.Template.Spec.TopologySpreadConstraints {
		spread = spread || c.TopologyKey == "topology.kubernetes.io/zone"
	}
	if !spread {
		t.Error("the pods are not spread over topology.kubernetes.io/zone")
	}

	// Ports match the defaults of the flags that set them.
	portFlags := map[string]struct {
		flag  string
		proto corev1.Protocol
	}{
		"rtmp": {"rtmp", corev1.ProtocolTCP}, "http": {"http", corev1.ProtocolTCP}, "api": {"api", corev1.ProtocolTCP},
		"rtc": {"rtc", corev1.ProtocolUDP}, "srt": {"srt", corev1.ProtocolUDP}, "system": {"system-api", corev1.ProtocolTCP},
		"gossip-tcp": {"gossip-addr", corev1.ProtocolTCP}, "gossip-udp": {"gossip-addr", corev1.ProtocolUDP},
		"raft": {"raft-addr", corev1.ProtocolTCP},
	}
	containerPorts := map[string]corev1.ContainerPort{}
	for _, p := range c.Ports {
		containerPorts[p.Name] = p
	}
	for name, pf := range portFlags {
		p, ok := containerPorts[name]
		if !ok {
			t.Errorf("container has no port %q", name)
			continue
		}
		def := flags[pf.flag]
		if def == "" {
			def = resolvedDefaults[pf.flag]
		}
		if !strings.HasSuffix(def, fmt.Sprintf(":%d", p.ContainerPort)) {
			t.Errorf("port %s = %d, but --%s defaults to %q", name, p.ContainerPort, pf.flag, def)
		}
		if p.Protocol != pf.proto {
			t.Errorf("port %s protocol %s, want %s", name, p.Protocol, pf.proto)
		}
		if vals := args[pf.flag]; len(vals) == 1 && !strings.HasSuffix(vals[0], fmt.Sprintf(":%d", p.ContainerPort)) {
			t.Errorf("--%s=%s does not listen on container port %d", pf.flag, vals[0], p.ContainerPort)
		}
	}

	// Probes hit paths the binary serves, on the system port.
	if c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet == nil || c.ReadinessProbe.HTTPGet.Path != "/readyz" {
		t.Errorf("readiness probe must GET /readyz: %+v", c.ReadinessProbe)
	}
	if c.LivenessProbe != nil {
		if c.LivenessProbe.HTTPGet == nil || c.LivenessProbe.HTTPGet.Path != "/healthz" {
			t.Errorf("liveness probe must GET /healthz: %+v", c.LivenessProbe)
		} else if c.LivenessProbe.FailureThreshold*c.LivenessProbe.PeriodSeconds < 30 {
			t.Errorf("liveness probe kills after %ds; too aggressive for a Raft voter",
				c.LivenessProbe.FailureThreshold*c.LivenessProbe.PeriodSeconds)
		}
	}
	for _, p := range []*corev1.Probe{c.ReadinessProbe, c.LivenessProbe} {
		if p != nil && p.HTTPGet != nil && p.HTTPGet.Port.String() != "system" {
			t.Errorf("probe port %s, want the system port", p.HTTPGet.Port.String())
		}
	}

	// Termination grace covers the drain timeout plus preStop.
	drain := args["drain-timeout"]
	if len(drain) != 1 {
		t.Errorf("--drain-timeout not set")
	} else if d, err := parseSeconds(drain[0]); err != nil || pod.Spec.TerminationGracePeriodSeconds == nil ||
		*pod.Spec.TerminationGracePeriodSeconds < d+5 {
		t.Errorf("terminationGracePeriodSeconds %v does not cover --drain-timeout=%s", pod.Spec.TerminationGracePeriodSeconds, drain[0])
	}
	if c.Lifecycle == nil || c.Lifecycle.PreStop == nil {
		t.Error("no preStop hook")
	}
	if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() {
		t.Error("no resource requests")
	}
	sc := pod.Spec.SecurityContext
	if sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot {
		t.Error("pod does not run as non-root")
	}

	// The headless Service and the join names agree with the StatefulSet.
	var headless *corev1.Service
	for i := range m.services {
		if m.services[i].Name == sts.Spec.ServiceName {
			headless = &m.services[i]
		}
	}
	if headless == nil {
		t.Fatalf("no Service named %q (the StatefulSet's serviceName)", sts.Spec.ServiceName)
	}
	if headless.Spec.ClusterIP != corev1.ClusterIPNone || !headless.Spec.PublishNotReadyAddresses {
		t.Errorf("peer Service must be headless with publishNotReadyAddresses")
	}
	joins := args["join"]
	if len(joins) != int(*sts.Spec.Replicas) {
		t.Errorf("--join lists %d names, want %d", len(joins), *sts.Spec.Replicas)
	}
	gossipPort := resolvedDefaults["gossip-addr"][strings.LastIndexByte(resolvedDefaults["gossip-addr"], ':')+1:]
	for i := 0; i < int(*sts.Spec.Replicas); i++ {
		want := fmt.Sprintf("%s-%d.%s.$(POD_NAMESPACE).svc.cluster.local:%s", sts.Name, i, headless.Name, gossipPort)
		if i >= len(joins) || joins[i] != want {
			t.Errorf("join[%d] = %v, want %s", i, joins, want)
		}
	}

	// Every Service selects the pods of a workload here, and each of its
	// ports reaches a container port of those pods, by name or by number
	// (a port without targetPort targets its own number).
	templates := map[string]corev1.PodTemplateSpec{"StatefulSet " + sts.Name: pod}
	for _, d := range m.deployments {
		templates["Deployment "+d.Name] = d.Spec.Template
	}
	for _, svc := range m.services {
		selected := 0
		for workload, tpl := range templates {
			if !selects(svc.Spec.Selector, tpl.Labels) {
				continue
			}
			selected++
			for _, p := range svc.Spec.Ports {
				if !targetsContainerPort(p, tpl.Spec.Containers) {
					target := "targetPort " + p.TargetPort.String()
					if tp := p.TargetPort.String(); tp == "" || tp == "0" {
						target = "no targetPort"
					}
					t.Errorf("Service %s port %s (%d/%s, %s) reaches no container port of %s",
						svc.Name, p.Name, p.Port, serviceProtocol(p.Protocol), target, workload)
				}
			}
		}
		if selected == 0 {
			t.Errorf("Service %s selector %v selects the pods of no workload", svc.Name, svc.Spec.Selector)
		}
	}
	public := map[string]corev1.ServicePort{}
	for _, svc := range m.services {
		if svc.Spec.Type == corev1.ServiceTypeLoadBalancer {
			for _, p := range svc.Spec.Ports {
				public[p.Name] = p
			}
		}
	}
	for name, want := range map[string]struct {
		port  int32
		proto corev1.Protocol
	}{"rtmp": {1935, "TCP"}, "http": {8080, "TCP"}, "api": {1985, "TCP"}, "rtc": {8000, "UDP"}, "srt": {10080, "UDP"}} {
		if p, ok := public[name]; !ok || p.Port != want.port || p.Protocol != want.proto {
			t.Errorf("client Service port %s = %+v, want %d/%s", name, p, want.port, want.proto)
		}
	}

	// The PDB selects the pods and allows one disruption.
	pdb := m.pdbs[0]
	if pdb.Spec.Selector == nil || !selects(pdb.Spec.Selector.MatchLabels, podLabels) {
		t.Errorf("PDB selector %v does not select pods labelled %v", pdb.Spec.Selector, podLabels)
	}
	if pdb.Spec.MaxUnavailable == nil || pdb.Spec.MaxUnavailable.IntValue() != 1 {
		t.Errorf("PDB maxUnavailable = %v, want 1", pdb.Spec.MaxUnavailable)
	}

	// Secrets the pods use exist.
	secrets := map[string]corev1.Secret{}
	for _, s := range m.secrets {
		secrets[s.Name] = s
	}
	for _, e := range c.Env {
		if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
			s, ok := secrets[e.ValueFrom.SecretKeyRef.Name]
			if _, has := s.StringData[e.ValueFrom.SecretKeyRef.Key]; !ok || !has {
				t.Errorf("env %s refers to missing secret key %s/%s", e.Name, e.ValueFrom.SecretKeyRef.Name, e.ValueFrom.SecretKeyRef.Key)
			}
		}
	}

	// Example SRS origins heartbeat to the system Service with the token.
	if len(m.deployments) == 0 {
		t.Fatal("no example SRS origin Deployment")
	}
	for _, d := range m.deployments {
		found := false
		for _, ct := range d.Spec.Template.Spec.Containers {
			for _, e := range ct.Env {
				if e.Name == "SRS_HEARTBEAT_URL" {
					found = true
					if !strings.Contains(e.Value, "srs-mesh-system:12025/api/v1/srs/register/$(SRS_MESH_TOKEN)") {
						t.Errorf("origin heartbeat url %q does not reach the system Service with the token", e.Value)
					}
				}
			}
		}
		if !found {
			t.Errorf("Deployment %s sets no SRS_HEARTBEAT_URL", d.Name)
		}
	}
}

func mountedAt(c *corev1.Container, volume, path string) bool {
	for _, vm := range c.VolumeMounts {
		if vm.Name == volume && vm.MountPath == path {
			return true
		}
	}
	return false
}

// targetsContainerPort reports whether the Service port p reaches a port of
// one of the containers: its targetPort names one, or numbers one, or (when
// unset) its port numbers one, with the same protocol (TCP when unset).
func targetsContainerPort(p corev1.ServicePort, containers []corev1.Container) bool {
	name, number := "", p.Port
	switch target := p.TargetPort.String(); {
	case target == "" || target == "0":
	case p.TargetPort.IntValue() != 0:
		number = int32(p.TargetPort.IntValue())
	default:
		name = target
	}
	for _, c := range containers {
		for _, cp := range c.Ports {
			if serviceProtocol(cp.Protocol) != serviceProtocol(p.Protocol) {
				continue
			}
			if (name != "" && cp.Name == name) || (name == "" && cp.ContainerPort == number) {
				return true
			}
		}
	}
	return false
}

// serviceProtocol is p with Kubernetes' default, TCP, when unset.
func serviceProtocol(p corev1.Protocol) corev1.Protocol {
	if p == "" {
		return corev1.ProtocolTCP
	}
	return p
}

func selects(selector, labels map[string]string) bool {
	if len(selector) == 0 {
		return false
	}
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

func parseSeconds(s string) (int64, error) {
	var n int64
	if _, err := fmt.Sscanf(strings.TrimSuffix(s, "s"), "%d", &n); err != nil {
		return 0, err
	}
	return n, nil
}

// The production shape of the manifests: cluster traffic is mutual TLS with
// a certificate per pod (made by an init container from the CA Secret, the
// main container seeing the CA certificate only), gossip is encrypted, writes
// need the token, and a NetworkPolicy keeps gossip and Raft to the mesh's
// own pods and the system API to origins, operators and the mesh.
func TestManifestsSecure(t *testing.T) {
	m := loadManifests(t)
	if len(m.statefulSets) != 1 {
		t.Fatalf("%d StatefulSets", len(m.statefulSets))
	}
	pod := m.statefulSets[0].Spec.Template.Spec
	c := pod.Containers[0]
	args := strings.Join(c.Args, " ")
	for _, want := range []string{"--tls-ca-file=/ca/ca.pem", "--tls-cert-file=/tls/$(POD_NAME).pem", "--tls-key-file=/tls/$(POD_NAME)-key.pem"} {
		if !strings.Contains(args, want) {
			t.Errorf("serve lacks %s", want)
		}
	}
	env := map[string]string{}
	for _, e := range c.Env {
		if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
			env[e.Name] = e.ValueFrom.SecretKeyRef.Key
		}
	}
	if env["SRS_MESH_GOSSIP_KEY"] == "" || env["SRS_MESH_TOKEN"] == "" {
		t.Errorf("gossip key and token must come from a Secret: %v", env)
	}
	if len(pod.InitContainers) != 1 || strings.Join(pod.InitContainers[0].Args, " ") == "" ||
		!strings.HasPrefix(strings.Join(pod.InitContainers[0].Args, " "), "tls cert --node-id=$(POD_NAME)") {
		t.Fatalf("no init container making the pod's certificate: %+v", pod.InitContainers)
	}
	vols := map[string]corev1.Volume{}
	for _, v := range pod.Volumes {
		vols[v.Name] = v
	}
	for _, vm := range c.VolumeMounts {
		if v := vols[vm.Name]; v.Secret != nil {
			if len(v.Secret.Items) != 1 || v.Secret.Items[0].Key != "ca.pem" {
				t.Errorf("the node mounts Secret %s beyond the CA certificate: %+v", v.Secret.SecretName, v.Secret.Items)
			}
		}
	}
	if v := vols["tls"]; v.EmptyDir == nil || v.EmptyDir.Medium != corev1.StorageMediumMemory {
		t.Errorf("the pod's key is not kept in memory: %+v", v)
	}

	if len(m.policies) != 1 {
		t.Fatalf("%d NetworkPolicies", len(m.policies))
	}
	np := m.policies[0]
	if np.Spec.PodSelector.MatchLabels["app.kubernetes.io/name"] != "srs-mesh" {
		t.Errorf("the policy selects %v", np.Spec.PodSelector)
	}
	// Who may reach each named port.
	open := map[string]bool{}
	from := map[string][]networkingv1.NetworkPolicyPeer{}
	for _, rule := range np.Spec.Ingress {
		for _, p := range rule.Ports {
			name := p.Port.String()
			if len(rule.From) == 0 {
				open[name] = true
			}
			from[name] = append(from[name], rule.From...)
		}
	}
	for _, p := range []string{"rtmp", "http", "api", "rtc", "srt"} {
		if !open[p] {
			t.Errorf("client port %s is not open to everyone", p)
		}
	}
	for _, p := range []string{"gossip-tcp", "gossip-udp", "raft"} {
		if open[p] || len(from[p]) != 1 || from[p][0].PodSelector == nil ||
			from[p][0].PodSelector.MatchLabels["app.kubernetes.io/name"] != "srs-mesh" || from[p][0].NamespaceSelector != nil {
			t.Errorf("cluster port %s must be open to the mesh's pods only: %+v", p, from[p])
		}
	}
	if open["system"] || len(from["system"]) == 0 {
		t.Errorf("the system API must not be open to everyone: %+v", from["system"])
	}
	allowed := map[string]bool{}
	for _, peer := range from["system"] {
		if peer.PodSelector == nil {
			t.Errorf("system API peer without a pod selector: %+v", peer)
			continue
		}
		for k, v := range peer.PodSelector.MatchLabels {
			allowed[k+"="+v] = true
		}
	}
	for _, want := range []string{"app.kubernetes.io/name=srs-origin", "srs-mesh.io/operator=true"} {
		if !allowed[want] {
			t.Errorf("system API not open to %s: %v", want, allowed)
		}
	}
}
