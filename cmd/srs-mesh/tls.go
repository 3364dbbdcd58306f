package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/srs-mesh/srs-mesh/mesh/clustertls"
)

// newTLSCmd is `srs-mesh tls`: the PEM files of a cluster's mutual TLS, with
// no openssl recipe (compare `consul tls ca create` and `cockroach cert`).
func newTLSCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "tls",
		Short: "Make the CA and node certificates of the cluster's mutual TLS",
		Long: `Cluster traffic (Raft and node-to-node HTTP) is mutual TLS with one CA and a
certificate per node whose common name is the node id. Make the CA once, keep
its key offline, and make one certificate per node:

  srs-mesh tls ca --out-dir certs
  srs-mesh tls cert --node-id n1 --host 10.0.0.11 --out-dir certs
  srs-mesh serve --node-id n1 --tls-ca-file certs/ca.pem \
    --tls-cert-file certs/n1.pem --tls-key-file certs/n1-key.pem ...`,
	}
	cmd.AddCommand(newTLSCACmd(), newTLSCertCmd())
	return cmd
}

func newTLSCACmd() *cobra.Command {
	var dir, name string
	var days int
	cmd := &cobra.Command{
		Use:   "ca",
		Short: "Write a new cluster CA: ca.pem and ca-key.pem",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if days < 1 {
				return errors.New("--days must be at least 1")
			}
			certPEM, keyPEM, err := clustertls.NewCA(name, time.Duration(days)*24*time.Hour)
			if err != nil {
				return err
			}
			return writePEMs(cmd, dir, map[string][]byte{"ca.pem": certPEM, "ca-key.pem": keyPEM})
		},
	}
	f := cmd.Flags()
	f.StringVar(&dir, "out-dir", ".", "directory to write the files to (they must not exist)")
	f.StringVar(&name, "name", "srs-mesh cluster CA", "the CA's common name")
	f.IntVar(&days, "days", 3650, "validity in days")
	return cmd
}

func newTLSCertCmd() *cobra.Command {
	var dir, caCert, caKey, id string
	var hosts []string
	var days int
	cmd := &cobra.Command{
		Use:   "cert",
		Short: "Write a node certificate signed by the CA: <node-id>.pem and <node-id>-key.pem",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if id == "" {
				return errors.New("--node-id is required: it is the certificate's common name, and must equal the node's --node-id")
			}
			if filepath.Base(id) != id || id == "." || id == ".." {
				return fmt.Errorf("--node-id %q cannot name a file", id)
			}
			if days < 1 {
				return errors.New("--days must be at least 1")
			}
			c, err := os.ReadFile(caCert)
			if err != nil {
				return fmt.Errorf("--ca-cert: %w", err)
			}
			k, err := os.ReadFile(caKey)
			if err != nil {
				return fmt.Errorf("--ca-key: %w", err)
			}
			certPEM, keyPEM, err := clustertls.NewNodeCert(c, k, id, hosts, time.Duration(days)*24*time.Hour)
			if err != nil {
				return err
			}
			return writePEMs(cmd, dir, map[string][]byte{id + ".pem": certPEM, id + "-key.pem": keyPEM})
		},
	}
	f := cmd.Flags()
	f.StringVar(&id, "node-id", "", "the node's id (the certificate's common name)")
	f.StringSliceVar(&hosts, "host", nil, "host name or IP of the node, added as a subject alternative name; repeatable")
	f.StringVar(&caCert, "ca-cert", "ca.pem", "the CA certificate")
	f.StringVar(&caKey, "ca-key", "ca-key.pem", "the CA key")
	f.StringVar(&dir, "out-dir", ".", "directory to write the files to (they must not exist)")
	f.IntVar(&days, "days", 825, "validity in days")
	return cmd
}

// writePEMs writes files into dir, refusing to overwrite any, keys readable
// by the owner only.
func writePEMs(cmd *cobra.Command, dir string, files map[string][]byte) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	names := make([]string, 0, len(files))
	for name := range files {
		if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
			return fmt.Errorf("%s exists; not overwriting it", filepath.Join(dir, name))
		}
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		b := files[name]
		mode := os.FileMode(0o644)
		if strings.HasSuffix(name, "-key.pem") {
			mode = 0o600
		}
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, mode); err != nil {
			return err
		}
		fmt.Fprintln(cmd.OutOrStdout(), "wrote", p)
	}
	return nil
}
