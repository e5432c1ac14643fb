// JacService from Go: list the models, describe one, then Predict and BatchJacobian on a small batch.
//
//	./build.sh                                        # stubs from src/Protos into ./gen, then ./bin/jacclient
//	./bin/jacclient --target 127.0.0.1:50051 --model pinn
//	./bin/jacclient --target 127.0.0.1:50051 --reference ../../tests/fixtures/reference/mlp_tanh.json
//	./bin/jacclient --target jac.example.com:50051 --ca ca.crt                                   # TLS
//	./bin/jacclient --target jac.example.com:50051 --ca ca.crt --cert client.crt --key client.key  # mutual TLS
//
// With --reference, the inputs come from the reference file and every output and Jacobian must match it:
// max |got - ref| <= tolerance * max |ref| per tensor (the server computes in float32, the reference is float64).
// Exit status: 0 all good, 1 a mismatch, 2 a call or connection failed.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"os"
	"sort"
	"strings"
	"time"
	"unicode"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	pb "jacservice.example/goclient/gen/jacservice/v1"
)

// Jacobians grow as batch * outputs * inputs; gRPC's default 4 MiB receive limit is too small for real models.
const maxMessageBytes = 64 << 20

// A reference that is all zeros would otherwise demand bit-exact zeros from float32 arithmetic.
const absoluteFloor = 1e-7

type refTensor struct {
	Shape []int64   `json:"shape"`
	Data  []float64 `json:"data"`
}

// reference is one tests/fixtures/reference/*.json file; jacobians are keyed by wrt input, then output.
type reference struct {
	Model     string                          `json:"model"`
	Inputs    map[string]refTensor            `json:"inputs"`
	Outputs   map[string]refTensor            `json:"outputs"`
	Jacobians map[string]map[string]refTensor `json:"jacobians"`
	path      string
}

type options struct {
	target, model, referencePath string
	ca, cert, key                string
	tolerance                    float64
	timeout                      time.Duration
}

func main() {
	var o options
	flag.StringVar(&o.target, "target", "127.0.0.1:50051", "server host:port")
	flag.StringVar(&o.ca, "ca", "", "TLS: PEM file of the CAs to trust for the server's certificate (with --cert alone: the system's trust store)")
	flag.StringVar(&o.cert, "cert", "", "mutual TLS: PEM file of the client certificate (with --key)")
	flag.StringVar(&o.key, "key", "", "mutual TLS: PEM file of the client certificate's private key")
	flag.StringVar(&o.model, "model", "", "model name (default: the reference's model, else pinn)")
	flag.StringVar(&o.referencePath, "reference", "", "reference JSON (tests/fixtures/reference/*.json) to check against")
	flag.Float64Var(&o.tolerance, "tolerance", 1e-4, "allowed error relative to the largest reference entry")
	flag.DurationVar(&o.timeout, "timeout", 10*time.Second, "deadline of each call")
	flag.Parse()
	os.Exit(run(o))
}

func run(o options) int {
	var ref *reference
	if o.referencePath != "" {
		var err error
		if ref, err = loadReference(o.referencePath); err != nil {
			fmt.Println("ERROR:", err)
			return 2
		}
	}
	model := o.model
	if model == "" {
		model = "pinn"
		if ref != nil {
			model = ref.Model
		}
	}

	security, err := transportSecurity(o)
	if err != nil {
		fmt.Println("ERROR:", err)
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), o.timeout)
	defer cancel()
	conn, err := grpc.DialContext(ctx, o.target, security, grpc.WithBlock(),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxMessageBytes), grpc.MaxCallSendMsgSize(maxMessageBytes)))
	if err != nil {
		fmt.Printf("ERROR: no server at %s within %v: %v\n", o.target, o.timeout, err)
		return 2
	}
	defer conn.Close()
	client := pb.NewJacobianServiceClient(conn)

	code, err := callAll(client, model, ref, o)
	if err != nil {
		// Every failed call carries a status code and a message from the server.
		s := status.Convert(err)
		fmt.Printf("ERROR: call failed: %s: %s\n", statusName(s.Code()), s.Message())
		return 2
	}
	return code
}

// transportSecurity is plaintext HTTP/2 unless a TLS file is given; then TLS, presenting the client certificate if
// there is one.
func transportSecurity(o options) (grpc.DialOption, error) {
	if o.ca == "" && o.cert == "" && o.key == "" {
		// grpc-go 1.33 (Debian 12) predates credentials/insecure; WithInsecure is its plaintext option.
		return grpc.WithInsecure(), nil
	}
	config := &tls.Config{MinVersion: tls.VersionTLS12}
	if o.ca != "" {
		pem, err := os.ReadFile(o.ca)
		if err != nil {
			return nil, err
		}
		// Only these CAs: a nil pool would mean the system's.
		config.RootCAs = x509.NewCertPool()
		if !config.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--ca %s: no PEM certificate in it", o.ca)
		}
	}
	if (o.cert == "") != (o.key == "") {
		return nil, fmt.Errorf("--cert and --key go together")
	}
	if o.cert != "" {
		pair, err := tls.LoadX509KeyPair(o.cert, o.key)
		if err != nil {
			return nil, err
		}
		config.Certificates = []tls.Certificate{pair}
	}
	return grpc.WithTransportCredentials(credentials.NewTLS(config)), nil
}

// callAll makes the calls in order; an error is a failed call, the int is the exit status otherwise.
func callAll(client pb.JacobianServiceClient, model string, ref *reference, o options) (int, error) {
	// Each call gets its own deadline; the server sees it too and drops the request if it expires while queued.
	call := func() (context.Context, context.CancelFunc) {
		return context.WithTimeout(context.Background(), o.timeout)
	}

	ctx, cancel := call()
	listing, err := client.ListModels(ctx, &pb.ListModelsRequest{})
	cancel()
	if err != nil {
		return 0, err
	}
	var names []string
	for _, m := range listing.Models {
		names = append(names, fmt.Sprintf("%s/%s %s", m.Name, m.Version, m.State))
	}
	fmt.Println("ListModels:", strings.Join(names, ", "))

	ctx, cancel = call()
	info, err := client.GetModel(ctx, &pb.GetModelRequest{Model: model})
	cancel()
	if err != nil {
		return 0, err
	}
	fmt.Printf("GetModel %s: version %s, %s, opset %d, inputs %s, outputs %s\n",
		info.Name, info.Version, info.State, info.Opset, signature(info.Inputs), signature(info.Outputs))

	inputs := map[string]*pb.Tensor{}
	if ref != nil {
		for name, t := range ref.Inputs {
			inputs[name] = toTensor(t)
		}
	} else if inputs, err = madeUpInputs(info, 2); err != nil {
		fmt.Println("ERROR:", err)
		return 2, nil
	}

	ctx, cancel = call()
	predicted, err := client.Predict(ctx, &pb.PredictRequest{Model: model, Inputs: inputs})
	cancel()
	if err != nil {
		return 0, err
	}
	for _, name := range sortedKeys(predicted.Outputs) {
		t := predicted.Outputs[name]
		fmt.Printf("Predict %s: %s%s = %s\n", model, name, shapeText(t.Shape), preview(t.Data))
	}

	// One BatchJacobian per float input: Wrt picks the input to differentiate. Keyed "d<out>/d<wrt>".
	jacobians := map[string]*pb.Tensor{}
	for _, in := range info.Inputs {
		if in.Dtype != "float" {
			continue
		}
		ctx, cancel = call()
		response, err := client.BatchJacobian(ctx, &pb.BatchJacobianRequest{Model: model, Inputs: inputs, Wrt: in.Name})
		cancel()
		if err != nil {
			return 0, err
		}
		for _, out := range sortedKeys(response.Jacobians) {
			t := response.Jacobians[out]
			label := "d" + out + "/d" + in.Name
			fmt.Printf("BatchJacobian %s: %s%s = %s\n", model, label, shapeText(t.Shape), preview(t.Data))
			jacobians[label] = t
		}
	}

	// Reading an error status: an unknown model is NOT_FOUND, with a message saying which.
	ctx, cancel = call()
	_, err = client.GetModel(ctx, &pb.GetModelRequest{Model: "no_such_model"})
	cancel()
	notFoundOK := status.Code(err) == codes.NotFound
	if err == nil {
		fmt.Println("GetModel no_such_model: succeeded, expected NOT_FOUND")
	} else {
		s := status.Convert(err)
		fmt.Printf("GetModel no_such_model: %s: %s\n", statusName(s.Code()), s.Message())
	}

	if ref == nil {
		if notFoundOK {
			return 0, nil
		}
		return 1, nil
	}
	return check(predicted.Outputs, jacobians, ref, o.tolerance, notFoundOK), nil
}

func check(outputs, jacobians map[string]*pb.Tensor, ref *reference, tolerance float64, notFoundOK bool) int {
	var failures []string
	if !notFoundOK {
		failures = append(failures, "GetModel no_such_model did not answer NOT_FOUND")
	}
	type expectation struct {
		label string
		got   *pb.Tensor
		want  refTensor
	}
	var expected []expectation
	for _, name := range sortedKeys(ref.Outputs) {
		expected = append(expected, expectation{name, outputs[name], ref.Outputs[name]})
	}
	for _, wrt := range sortedKeys(ref.Jacobians) {
		for _, out := range sortedKeys(ref.Jacobians[wrt]) {
			label := "d" + out + "/d" + wrt
			expected = append(expected, expectation{label, jacobians[label], ref.Jacobians[wrt][out]})
		}
	}
	for _, e := range expected {
		ok, detail := compare(e.got, e.want, tolerance)
		if ok {
			fmt.Printf("match %s: %s\n", e.label, detail)
		} else {
			fmt.Printf("MISMATCH %s: %s\n", e.label, detail)
			failures = append(failures, e.label+": "+detail)
		}
	}
	if len(failures) > 0 {
		fmt.Printf("FAIL: %d problem(s) against %s:\n", len(failures), ref.path)
		for _, f := range failures {
			fmt.Println("  " + f)
		}
		return 1
	}
	fmt.Printf("PASS: %d outputs and Jacobians of %s match %s (max abs error <= %g x largest |reference| entry)\n",
		len(expected), ref.Model, ref.path, tolerance)
	return 0
}

// compare reports whether got matches want, with the error found or what differs.
func compare(got *pb.Tensor, want refTensor, tolerance float64) (bool, string) {
	if got == nil {
		return false, "missing from the response"
	}
	if shapeText(got.Shape) != shapeText(want.Shape) {
		return false, fmt.Sprintf("shape %s, expected %s", shapeText(got.Shape), shapeText(want.Shape))
	}
	if len(got.Data) != len(want.Data) {
		return false, fmt.Sprintf("%d values, expected %d", len(got.Data), len(want.Data))
	}
	largest, worst, worstAt := 0.0, 0.0, 0
	for i, w := range want.Data {
		largest = math.Max(largest, math.Abs(w))
		err := math.Abs(float64(got.Data[i]) - w)
		if err > worst || math.IsNaN(err) {
			worst, worstAt = err, i
		}
	}
	allowed := math.Max(tolerance*largest, absoluteFloor)
	ok := worst <= allowed // false for NaN too
	return ok, fmt.Sprintf("max abs error %.3g at flat index %d, allowed %.3g", worst, worstAt, allowed)
}

func loadReference(path string) (*reference, error) {
	text, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	ref := &reference{path: path}
	if err := json.Unmarshal(text, ref); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return ref, nil
}

// toTensor converts reference inputs: they are float32 values written in full, so the conversion is exact.
func toTensor(t refTensor) *pb.Tensor {
	data := make([]float32, len(t.Data))
	for i, v := range t.Data {
		data[i] = float32(v)
	}
	return &pb.Tensor{Shape: t.Shape, Data: data}
}

// madeUpInputs gives small deterministic values in [-0.3, 0.3] shaped like the model's inputs.
func madeUpInputs(info *pb.ModelInfo, batch int64) (map[string]*pb.Tensor, error) {
	inputs := map[string]*pb.Tensor{}
	for _, in := range info.Inputs {
		shape := []int64{batch}
		size := batch
		for _, d := range in.Shape[1:] {
			if d < 0 {
				return nil, fmt.Errorf("input %s has a dynamic axis besides the batch; pass --reference", in.Name)
			}
			shape = append(shape, d)
			size *= d
		}
		data := make([]float32, size)
		for i := range data {
			data[i] = 0.1 * float32(i%7-3)
		}
		inputs[in.Name] = &pb.Tensor{Shape: shape, Data: data}
	}
	return inputs, nil
}

// statusName spells codes the way the gRPC spec (and the other examples) do: NOT_FOUND, not NotFound.
func statusName(c codes.Code) string {
	if c == codes.OK {
		return "OK"
	}
	var b strings.Builder
	for i, r := range c.String() {
		if i > 0 && unicode.IsUpper(r) {
			b.WriteByte('_')
		}
		b.WriteRune(unicode.ToUpper(r))
	}
	return b.String()
}

func signature(tensors []*pb.TensorInfo) string {
	var parts []string
	for _, t := range tensors {
		parts = append(parts, fmt.Sprintf("%s%s:%s", t.Name, shapeText(t.Shape), t.Dtype))
	}
	return strings.Join(parts, " ")
}

func shapeText(shape []int64) string {
	parts := make([]string, len(shape))
	for i, d := range shape {
		parts[i] = fmt.Sprint(d)
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

func preview(data []float32) string {
	const count = 4
	var parts []string
	for i := 0; i < len(data) && i < count; i++ {
		parts = append(parts, fmt.Sprintf("%.6g", data[i]))
	}
	if len(data) > count {
		parts = append(parts, "...")
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
