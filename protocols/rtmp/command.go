package rtmp

import (
	"fmt"

	"github.com/srs-mesh/srs-mesh/protocols/rtmp/amf0"
	"github.com/srs-mesh/srs-mesh/protocols/rtmp/chunk"
)

// Chunk streams used for messages this proxy writes itself. Relayed
// messages keep the chunk stream they arrived on.
const (
	csidCommand = 3
	csidStream  = 5
)

// command is a decoded command message: name, transaction id, command
// object and further arguments.
type command struct {
	Name string
	Txn  float64
	Obj  any
	Args []any
}

// parseCommand decodes an AMF0 command, or an AMF3 command whose body is
// AMF0 after a leading format byte, as FFmpeg and Flash send them.
func parseCommand(m *chunk.Message) (command, error) {
	p := m.Payload
	if m.Type == chunk.TypeCommandAMF3 && len(p) > 0 && p[0] == 0 {
		p = p[1:]
	}
	vals, err := amf0.DecodeAll(p)
	if err != nil {
		return command{}, fmt.Errorf("%w: command: %w", ErrProtocol, err)
	}
	var c command
	var ok bool
	if len(vals) == 0 {
		return c, fmt.Errorf("%w: empty command", ErrProtocol)
	}
	if c.Name, ok = vals[0].(string); !ok {
		return c, fmt.Errorf("%w: command name is %T", ErrProtocol, vals[0])
	}
	if len(vals) > 1 {
		c.Txn, _ = vals[1].(float64)
	}
	if len(vals) > 2 {
		c.Obj = vals[2]
	}
	if len(vals) > 3 {
		c.Args = vals[3:]
	}
	return c, nil
}

// arg returns argument i (after the command object), or nil.
func (c *command) arg(i int) any {
	if i < len(c.Args) {
		return c.Args[i]
	}
	return nil
}

// info returns the first argument as an object (the info object of
// _result, _error and onStatus).
func (c *command) info() amf0.Object {
	o, _ := c.arg(0).(amf0.Object)
	return o
}

func isCommand(m *chunk.Message) bool {
	return m.Type == chunk.TypeCommandAMF0 || m.Type == chunk.TypeCommandAMF3
}

// status builds an onStatus info object.
func status(level, code, description string) amf0.Object {
	return amf0.Object{{Key: "level", Value: level}, {Key: "code", Value: code}, {Key: "description", Value: description}}
}

// Status codes sent to clients.
const (
	codeConnectSuccess   = "NetConnection.Connect.Success"
	codePublishStart     = "NetStream.Publish.Start"
	codePublishBadName   = "NetStream.Publish.BadName"
	codePublishFailed    = "NetStream.Publish.Failed"
	codePlayStart        = "NetStream.Play.Start"
	codePlayReset        = "NetStream.Play.Reset"
	codePlayNotFound     = "NetStream.Play.StreamNotFound"
	codePlayFailed       = "NetStream.Play.Failed"
	levelStatus          = "status"
	levelError           = "error"
	fmsVersion           = "FMS/3,5,3,888"
	fmsCapabilities      = 127.0
	connectSuccessDetail = "Connection succeeded"
)
