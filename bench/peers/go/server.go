// go_server: grpc.testing.BenchmarkService UnaryCall on grpc-go (Debian's
// golang-google-grpc-dev 1.33), the library the original Collector runs on, as a peer in
// `make bench` (bench/peers.py):
//
//	go_server --port N
//
// Prints "listening on 127.0.0.1:PORT" once serving (N may be 0). Run it with GOMAXPROCS
// matching the node's reactor threads (1).
//
// The messages go through a codec written here for SimpleRequest and SimpleResponse, since
// Debian's protoc-gen-go and grpc-go do not agree on one generation of stubs offline. It
// does the work generated code does: the request's payload body is copied out of the wire
// bytes, the response holds its own body of response_size zero bytes, and marshalling
// allocates the output and copies the body into it. Everything else is grpc-go's default.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"

	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
)

type simpleRequest struct {
	responseSize int
	body         []byte
}

type simpleResponse struct {
	body []byte
}

var errBadMessage = errors.New("malformed message")

func uvarint(b []byte) (uint64, int) {
	var v uint64
	for i := 0; i < len(b) && i < 10; i++ {
		v |= uint64(b[i]&0x7f) << (7 * uint(i))
		if b[i] < 0x80 {
			return v, i + 1
		}
	}
	return 0, 0
}

func putUvarint(b []byte, v uint64) int {
	i := 0
	for v >= 0x80 {
		b[i] = byte(v) | 0x80
		v >>= 7
		i++
	}
	b[i] = byte(v)
	return i + 1
}

func varintLen(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}

// unmarshalRequest reads response_size (2) and payload (3) { body (2) }, skipping the rest.
func unmarshalRequest(b []byte, r *simpleRequest) error {
	for len(b) > 0 {
		tag, n := uvarint(b)
		if n == 0 {
			return errBadMessage
		}
		b = b[n:]
		switch tag & 7 {
		case 0:
			v, n := uvarint(b)
			if n == 0 {
				return errBadMessage
			}
			if tag>>3 == 2 {
				r.responseSize = int(int32(v))
			}
			b = b[n:]
		case 1, 5:
			w := 8
			if tag&7 == 5 {
				w = 4
			}
			if len(b) < w {
				return errBadMessage
			}
			b = b[w:]
		case 2:
			l, n := uvarint(b)
			if n == 0 || uint64(len(b)-n) < l {
				return errBadMessage
			}
			field := b[n : n+int(l)]
			if tag>>3 == 3 {
				if err := unmarshalPayload(field, r); err != nil {
					return err
				}
			}
			b = b[n+int(l):]
		default:
			return errBadMessage
		}
	}
	return nil
}

func unmarshalPayload(b []byte, r *simpleRequest) error {
	for len(b) > 0 {
		tag, n := uvarint(b)
		if n == 0 {
			return errBadMessage
		}
		b = b[n:]
		switch tag & 7 {
		case 0:
			_, n := uvarint(b)
			if n == 0 {
				return errBadMessage
			}
			b = b[n:]
		case 2:
			l, n := uvarint(b)
			if n == 0 || uint64(len(b)-n) < l {
				return errBadMessage
			}
			if tag>>3 == 2 { // a copy, as generated code makes of a bytes field
				r.body = append([]byte(nil), b[n:n+int(l)]...)
			}
			b = b[n+int(l):]
		default:
			return errBadMessage
		}
	}
	return nil
}

func marshalResponse(r *simpleResponse) []byte {
	if len(r.body) == 0 {
		return []byte{}
	}
	inner := 1 + varintLen(uint64(len(r.body))) + len(r.body)
	out := make([]byte, 1+varintLen(uint64(inner))+inner)
	i := 0
	out[i] = 0x0a // SimpleResponse.payload
	i++
	i += putUvarint(out[i:], uint64(inner))
	out[i] = 0x12 // Payload.body
	i++
	i += putUvarint(out[i:], uint64(len(r.body)))
	copy(out[i:], r.body)
	return out
}

// benchCodec replaces grpc-go's "proto" codec for this process's two message types.
type benchCodec struct{}

func (benchCodec) Name() string { return "proto" }

func (benchCodec) Marshal(v interface{}) ([]byte, error) {
	switch m := v.(type) {
	case *simpleResponse:
		return marshalResponse(m), nil
	}
	return nil, fmt.Errorf("benchCodec: cannot marshal %T", v)
}

func (benchCodec) Unmarshal(data []byte, v interface{}) error {
	switch m := v.(type) {
	case *simpleRequest:
		return unmarshalRequest(data, m)
	}
	return fmt.Errorf("benchCodec: cannot unmarshal into %T", v)
}

func unaryCall(srv interface{}, ctx context.Context, dec func(interface{}) error,
	interceptor grpc.UnaryServerInterceptor) (interface{}, error) {
	req := new(simpleRequest)
	if err := dec(req); err != nil {
		return nil, err
	}
	resp := &simpleResponse{}
	if req.responseSize > 0 {
		resp.body = make([]byte, req.responseSize)
	}
	return resp, nil
}

type benchmarkService interface{}

var serviceDesc = grpc.ServiceDesc{
	ServiceName: "grpc.testing.BenchmarkService",
	HandlerType: (*benchmarkService)(nil),
	Methods:     []grpc.MethodDesc{{MethodName: "UnaryCall", Handler: unaryCall}},
	Streams:     []grpc.StreamDesc{},
	Metadata:    "grpc/testing/benchmark_service.proto",
}

func main() {
	port := flag.Int("port", 0, "TCP port on 127.0.0.1 (0: any free port)")
	flag.Parse()
	encoding.RegisterCodec(benchCodec{})
	lis, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", *port))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	s := grpc.NewServer()
	s.RegisterService(&serviceDesc, struct{}{})
	fmt.Printf("listening on %s\n", lis.Addr().String())
	os.Stdout.Sync()
	if err := s.Serve(lis); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
