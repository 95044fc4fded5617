package wire

import (
	"errors"
	"strings"
	"testing"
)

// TestFieldLimits decodes, for each limited field, a message with the
// field at its limit (accepted) and one byte or entry over (refused with
// ErrFieldLimit).
func TestFieldLimits(t *testing.T) {
	str := func(n int) string { return strings.Repeat("x", n) }
	strs := func(n, each int) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = str(each)
		}
		return out
	}
	bin := func(n int) []byte { return make([]byte, n) }
	tools := func(n int) []Toolchain { return make([]Toolchain, n) }
	tests := []struct {
		name     string
		t        MsgType
		at, over func() any
	}{
		{"Hello.name", MsgHello, func() any { return &Hello{Name: str(MaxName)} }, func() any { return &Hello{Name: str(MaxName + 1)} }},
		{"Hello.version", MsgHello, func() any { return &Hello{Version: str(MaxShort)} }, func() any { return &Hello{Version: str(MaxShort + 1)} }},
		{"Hello.features count", MsgHello, func() any { return &Hello{Features: strs(MaxFeatures, 0)} }, func() any { return &Hello{Features: strs(MaxFeatures+1, 0)} }},
		{"Hello.features entry", MsgHello, func() any { return &Hello{Features: strs(1, MaxShort)} }, func() any { return &Hello{Features: strs(1, MaxShort+1)} }},
		{"Refused.reason", MsgRefused, func() any { return &Refused{Reason: str(MaxText)} }, func() any { return &Refused{Reason: str(MaxText + 1)} }},
		{"Register.toolchains", MsgRegister, func() any { return &Register{Toolchains: tools(MaxToolchains)} }, func() any { return &Register{Toolchains: tools(MaxToolchains + 1)} }},
		{"Register.toolchain path", MsgRegister, func() any { return &Register{Toolchains: []Toolchain{{Path: str(MaxText)}}} }, func() any { return &Register{Toolchains: []Toolchain{{Path: str(MaxText + 1)}}} }},
		{"Register.compiler", MsgRegister, func() any { return &Register{Toolchains: []Toolchain{{Compiler: str(MaxShort)}}} }, func() any { return &Register{Toolchains: []Toolchain{{Compiler: str(MaxShort + 1)}}} }},
		{"Register.kernel", MsgRegister, func() any { return &Register{Kernel: str(MaxShort)} }, func() any { return &Register{Kernel: str(MaxShort + 1)} }},
		{"Register.seal_key", MsgRegister, func() any { return &Register{SealKey: bin(MaxKey)} }, func() any { return &Register{SealKey: bin(MaxKey + 1)} }},
		{"Submit.file", MsgSubmit, func() any { return &Submit{FileName: str(MaxText)} }, func() any { return &Submit{FileName: str(MaxText + 1)} }},
		{"Submit.lang", MsgSubmit, func() any { return &Submit{Language: str(MaxShort)} }, func() any { return &Submit{Language: str(MaxShort + 1)} }},
		{"Submit.client_key", MsgSubmit, func() any { return &Submit{ClientKey: bin(MaxKey)} }, func() any { return &Submit{ClientKey: bin(MaxKey + 1)} }},
		{"Error.msg", MsgError, func() any { return &Error{Message: str(MaxText)} }, func() any { return &Error{Message: str(MaxText + 1)} }},
		{"JobState.detail", MsgJobState, func() any { return &JobState{Detail: str(MaxText)} }, func() any { return &JobState{Detail: str(MaxText + 1)} }},
		{"Assign.wrapped_key", MsgAssign, func() any { return &Assign{WrappedKey: bin(MaxKey)} }, func() any { return &Assign{WrappedKey: bin(MaxKey + 1)} }},
		{"Assign.owner", MsgAssign, func() any { return &Assign{Owner: str(MaxShort)} }, func() any { return &Assign{Owner: str(MaxShort + 1)} }},
		{"Output.job", MsgOutput, func() any { return &Output{JobID: str(MaxShort)} }, func() any { return &Output{JobID: str(MaxShort + 1)} }},
		{"Output.key", MsgOutput, func() any { return &Output{Key: bin(MaxKey)} }, func() any { return &Output{Key: bin(MaxKey + 1)} }},
		{"Load.health", MsgLoad, func() any { return &Load{Health: str(MaxText)} }, func() any { return &Load{Health: str(MaxText + 1)} }},
		{"Result.detail", MsgResult, func() any { return &Result{Detail: str(MaxText)} }, func() any { return &Result{Detail: str(MaxText + 1)} }},
		{"Result.slave", MsgResult, func() any { return &Result{Slave: str(MaxName)} }, func() any { return &Result{Slave: str(MaxName + 1)} }},
		{"Cancel.job", MsgCancel, func() any { return &Cancel{JobID: str(MaxShort)} }, func() any { return &Cancel{JobID: str(MaxShort + 1)} }},
		{"Info.languages", MsgInfo, func() any { return &Info{Languages: make([]LanguageInfo, MaxLanguages)} }, func() any { return &Info{Languages: make([]LanguageInfo, MaxLanguages+1)} }},
		{"AdminRequest.args count", MsgAdminRequest, func() any { return &AdminRequest{Args: strs(MaxArgs, 0)} }, func() any { return &AdminRequest{Args: strs(MaxArgs+1, 0)} }},
		{"AdminRequest.arg", MsgAdminRequest, func() any { return &AdminRequest{Args: strs(1, MaxText)} }, func() any { return &AdminRequest{Args: strs(1, MaxText+1)} }},
		{"WrapRequest.slave_cert", MsgWrapRequest, func() any { return &WrapRequest{SlaveCert: bin(MaxCert)} }, func() any { return &WrapRequest{SlaveCert: bin(MaxCert + 1)} }},
		{"Wrapped.refused", MsgWrapped, func() any { return &Wrapped{Refused: str(MaxText)} }, func() any { return &Wrapped{Refused: str(MaxText + 1)} }},
		{"Register.held", MsgRegister, func() any { return &Register{Held: make([]HeldJob, MaxHeld)} }, func() any { return &Register{Held: make([]HeldJob, MaxHeld+1)} }},
		{"Register.held job", MsgRegister, func() any { return &Register{Held: []HeldJob{{JobID: str(MaxShort)}}} }, func() any { return &Register{Held: []HeldJob{{JobID: str(MaxShort + 1)}}} }},
		{"Wraps.wraps", MsgWraps, func() any { return &Wraps{Wraps: make([]KeyWrap, MaxWraps)} }, func() any { return &Wraps{Wraps: make([]KeyWrap, MaxWraps+1)} }},
		{"Wraps.key", MsgWraps, func() any { return &Wraps{Wraps: []KeyWrap{{Key: bin(MaxKey)}}} }, func() any { return &Wraps{Wraps: []KeyWrap{{Key: bin(MaxKey + 1)}}} }},
		{"Submit.wraps", MsgSubmit, func() any { return &Submit{Wraps: make([]KeyWrap, MaxWraps)} }, func() any { return &Submit{Wraps: make([]KeyWrap, MaxWraps+1)} }},
		{"Submit.wrap slave", MsgSubmit, func() any { return &Submit{Wraps: []KeyWrap{{Slave: str(MaxName)}}} }, func() any { return &Submit{Wraps: []KeyWrap{{Slave: str(MaxName + 1)}}} }},
		{"Submit.wrap seal_key", MsgSubmit, func() any { return &Submit{Wraps: []KeyWrap{{SealKey: bin(MaxKey)}}} }, func() any { return &Submit{Wraps: []KeyWrap{{SealKey: bin(MaxKey + 1)}}} }},
		{"Submit.wrap key", MsgSubmit, func() any { return &Submit{Wraps: []KeyWrap{{Key: bin(MaxKey)}}} }, func() any { return &Submit{Wraps: []KeyWrap{{Key: bin(MaxKey + 1)}}} }},
		{"Submit.wrap_nonce", MsgSubmit, func() any { return &Submit{WrapNonce: bin(MaxKey)} }, func() any { return &Submit{WrapNonce: bin(MaxKey + 1)} }},
		{"Assign.wrap_nonce", MsgAssign, func() any { return &Assign{WrapNonce: bin(MaxKey)} }, func() any { return &Assign{WrapNonce: bin(MaxKey + 1)} }},
		{"Submit.key_nonce", MsgSubmit, func() any { return &Submit{KeyNonce: bin(MaxKey)} }, func() any { return &Submit{KeyNonce: bin(MaxKey + 1)} }},
		{"InfoRequest.seal_for", MsgInfoRequest, func() any { return &InfoRequest{SealFor: str(MaxShort)} }, func() any { return &InfoRequest{SealFor: str(MaxShort + 1)} }},
		{"Info.seal_slaves", MsgInfo, func() any { return &Info{SealSlaves: make([]SealSlave, MaxWraps)} }, func() any { return &Info{SealSlaves: make([]SealSlave, MaxWraps+1)} }},
		{"Info.seal slave cert", MsgInfo, func() any { return &Info{SealSlaves: []SealSlave{{Cert: bin(MaxCert)}}} }, func() any { return &Info{SealSlaves: []SealSlave{{Cert: bin(MaxCert + 1)}}} }},
		{"Attach.job", MsgAttach, func() any { return &Attach{JobID: str(MaxShort)} }, func() any { return &Attach{JobID: str(MaxShort + 1)} }},
		{"Attached.key_nonce", MsgAttached, func() any { return &Attached{KeyNonce: bin(MaxKey)} }, func() any { return &Attached{KeyNonce: bin(MaxKey + 1)} }},
		{"JobList.jobs", MsgJobList, func() any { return &JobList{Jobs: make([]JobSummary, MaxJobList)} }, func() any { return &JobList{Jobs: make([]JobSummary, MaxJobList+1)} }},
		{"JobList.file", MsgJobList, func() any { return &JobList{Jobs: []JobSummary{{FileName: str(MaxText)}}} }, func() any { return &JobList{Jobs: []JobSummary{{FileName: str(MaxText + 1)}}} }},
		{"Submit.source", MsgSubmit, func() any { return &Submit{Inline: Inline{Source: bin(MaxInline)}} }, func() any { return &Submit{Inline: Inline{Source: bin(MaxInline + 1)}} }},
		{"Submit.stdin", MsgSubmit, func() any { return &Submit{Inline: Inline{Stdin: bin(MaxInline)}} }, func() any { return &Submit{Inline: Inline{Stdin: bin(MaxInline + 1)}} }},
		{"Submit inline together", MsgSubmit, func() any { return &Submit{Inline: Inline{Source: bin(MaxInline - 1), Stdin: bin(1)}} }, func() any { return &Submit{Inline: Inline{Source: bin(MaxInline - 1), Stdin: bin(2)}} }},
		{"Submit.source_sha256", MsgSubmit, func() any { return &Submit{Inline: Inline{SourceSHA256: bin(64)}} }, func() any { return &Submit{Inline: Inline{SourceSHA256: bin(65)}} }},
		{"Submit.stdin_sha256", MsgSubmit, func() any { return &Submit{Inline: Inline{StdinSHA256: bin(64)}} }, func() any { return &Submit{Inline: Inline{StdinSHA256: bin(65)}} }},
		{"Assign.source", MsgAssign, func() any { return &Assign{Inline: Inline{Source: bin(MaxInline)}} }, func() any { return &Assign{Inline: Inline{Source: bin(MaxInline + 1)}} }},
		{"Assign.stdin", MsgAssign, func() any { return &Assign{Inline: Inline{Stdin: bin(MaxInline)}} }, func() any { return &Assign{Inline: Inline{Stdin: bin(MaxInline + 1)}} }},
		{"Assign inline together", MsgAssign, func() any { return &Assign{Inline: Inline{Source: bin(MaxInline / 2), Stdin: bin(MaxInline / 2)}} }, func() any { return &Assign{Inline: Inline{Source: bin(MaxInline / 2), Stdin: bin(MaxInline/2 + 1)}} }},
		{"Assign.source_sha256", MsgAssign, func() any { return &Assign{Inline: Inline{SourceSHA256: bin(64)}} }, func() any { return &Assign{Inline: Inline{SourceSHA256: bin(65)}} }},
		{"FileHeader.name", MsgFileHeader, func() any { return &FileHeader{Name: str(MaxText)} }, func() any { return &FileHeader{Name: str(MaxText + 1)} }},
		{"FileHeader.sha256", MsgFileHeader, func() any { return &FileHeader{SHA256: bin(64)} }, func() any { return &FileHeader{SHA256: bin(65)} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, err := Encode(tt.t, 0, tt.at())
			if err != nil {
				t.Fatal(err)
			}
			if _, err := DecodeNew(e); err != nil {
				t.Fatalf("at the limit: %v", err)
			}
			e, err = Encode(tt.t, 0, tt.over())
			if err != nil {
				t.Fatal(err)
			}
			if _, err := DecodeNew(e); !errors.Is(err, ErrFieldLimit) {
				t.Fatalf("over the limit: Decode = %v, want ErrFieldLimit", err)
			}
		})
	}
}

// TestEveryBodyIsChecked makes sure a body type added later does not skip
// the field limits by accident: every type with a string, byte or list
// field implements checker.
func TestEveryBodyIsChecked(t *testing.T) {
	unchecked := map[MsgType]bool{MsgAdminReply: true, MsgListJobs: true}
	for _, mt := range MsgTypes() {
		v, _ := NewBody(mt)
		if _, ok := v.(checker); !ok && !unchecked[mt] {
			t.Errorf("%v has no field limits (add a checkFields method)", mt)
		}
	}
}
