package mesh

import (
	"github.com/srs-mesh/srs-mesh/mesh/peers"
	"github.com/srs-mesh/srs-mesh/mesh/telemetry"
	"github.com/srs-mesh/srs-mesh/mesh/view"
)

// The JSON documents of the cluster API on the system API port; see
// package view.
type (
	// Status is the answer of GET /mesh/v1/status.
	Status = view.Status
	// MemberStatus is one node of the mesh, merged from gossip and Raft.
	MemberStatus = view.Member
	// OriginStatus is one origin with its replicated health and load.
	OriginStatus = view.Origin
	// AssignmentStatus is one stream key and the origin that owns it.
	AssignmentStatus = view.Assignment
	// ProtocolStatus is the command protocol of a node and of the mesh.
	ProtocolStatus = view.Protocol
)

// The cluster-wide documents of package telemetry.
type (
	// Events is the answer of GET /mesh/v1/events.
	Events = telemetry.Events
	// History is the answer of GET /mesh/v1/history.
	History = telemetry.History
	// NodeAnswer says whether one node's part is in a cluster-wide
	// document.
	NodeAnswer = peers.Answer
)
