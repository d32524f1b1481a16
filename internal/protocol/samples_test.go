package protocol

import "bytes"

// sample is one example envelope per message type: the round-trip cases and
// the golden vectors under testdata/vectors.
type sample struct {
	name string
	env  Envelope
}

func samples() []sample {
	key := bytes.Repeat([]byte{0xd7}, 32)
	artifact := []byte("signed-artifact")
	return []sample{
		{"ack", Envelope{Version, 3, &Ack{}}},
		{"error", Envelope{Version, 6, &Error{Code: CodeNotFound, Text: "no app sensor"}}},
		{"disconnect", Envelope{Version, 14, &Disconnect{Reason: DisconnectShutdown, Text: "bye"}}},
		{"enroll_request", Envelope{Version, 1, &EnrollRequest{
			PublicKey:       key,
			KeyAlgorithm:    KeyEd25519,
			DeviceType:      "esp32",
			Capabilities:    []string{"wasm", "tls", "wifi"},
			CSR:             []byte{0x30, 0x81, 0x8c, 0x30, 0x40},
			FirmwareVersion: "0.1.0",
			SealingKey:      bytes.Repeat([]byte{0x7c}, 32),
			SealingKeyProof: bytes.Repeat([]byte{0x5a}, 64),
		}}},
		{"enroll_response", Envelope{Version, 1, &EnrollResponse{
			DeviceID:   "dev-7f3a",
			CertChain:  [][]byte{{0x30, 0x82, 0x01, 0x0a}, {0x30, 0x82, 0x01, 0x0b}},
			SigningKey: bytes.Repeat([]byte{0x5e}, 32),
		}}},
		{"enroll_ack", Envelope{Version, 3, &EnrollAck{DeviceID: "dev-7f3a"}}},
		{"heartbeat", Envelope{Version, 5, &Heartbeat{
			UptimeSeconds: 3600,
			FreeMemory:    81920,
			RunningApps:   2,
			Link:          Link{RSSI: -67, LossPermille: 12},
		}}},
		{"heartbeat_ack", Envelope{Version, 5, &HeartbeatAck{ServerTime: 1767225600000, IntervalSeconds: 30}}},
		{"deploy", Envelope{Version, 2, &Deploy{App: "sensor", Sequence: 7, Artifact: artifact, Start: true}}},
		{"update", Envelope{Version, 4, &Update{App: "sensor", Sequence: 8, Artifact: artifact}}},
		{"start", Envelope{Version, 6, &Start{App: "sensor", Sequence: 8}}},
		{"stop", Envelope{Version, 8, &Stop{App: "sensor"}}},
		{"remove", Envelope{Version, 10, &Remove{App: "sensor", Sequence: 8}}},
		{"app_status", Envelope{Version, 2, &AppStatus{App: "sensor", Sequence: 7, State: StateRunning}}},
		{"app_status_trapped", Envelope{Version, 7, &AppStatus{App: "sensor", Sequence: 7, State: StateTrapped, Message: "integer divide by zero"}}},
		{"app_status_limit", Envelope{Version, 9, &AppStatus{App: "sensor", Sequence: 7, State: StateLimitExceeded, Resource: ResourceMemory}}},
		{"app_status_refused", Envelope{Version, 4, &AppStatus{App: "sensor", State: StateRefused, Reason: ReasonReplay}}},
		{"metrics_report", Envelope{Version, 11, &MetricsReport{
			UptimeSeconds: 3660,
			FreeMemory:    79872,
			Link:          Link{RSSI: -70, LossPermille: 5},
			Apps: []AppMetrics{{
				App: "sensor", MemoryBytes: 65536, Fuel: 120000, CPUMicros: 4500, Executions: 61, Traps: 0,
			}},
		}}},
		{"config_push", Envelope{Version, 12, &ConfigPush{
			App:        "sensor",
			Generation: 3,
			Values:     map[string]string{"interval": "10s", "unit": "celsius"},
		}}},
		{"config_ack", Envelope{Version, 12, &ConfigAck{App: "sensor", Generation: 3}}},
		{"renew_request", Envelope{Version, 13, &RenewRequest{CSR: []byte{0x30, 0x81, 0xd3, 0x30, 0x81, 0x86}}}},
		{"renew_response", Envelope{Version, 13, &RenewResponse{
			CertChain: [][]byte{{0x30, 0x82, 0x01, 0x1c}, {0x30, 0x82, 0x01, 0x0b}},
		}}},
	}
}
