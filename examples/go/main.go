// A Go client for the mmsearch sidecar: Info, then Search by text or by stored id, then
// Rerank of the hits by id. Built offline from Debian's packages (see README.md here).
//
//	mmsearch-go -addr 127.0.0.1:50051 -base items -id google:1F600
//	mmsearch-go -addr 127.0.0.1:50051 -base items -text "red heart" -top-k 5
//	mmsearch-go -addr 127.0.0.1:50051 -base items -text "red heart" -fields label,category
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	pb "mmsearch/gen/mmsearchv1"
)

// protoV2Codec replaces grpc's default "proto" codec. Debian's grpc-go 1.33 marshals with
// github.com/golang/protobuf, which Debian ships at 1.3.5 (APIv1): it panics on the APIv2
// messages protoc-gen-go 1.28 generates. google.golang.org/protobuf/proto handles them.
type protoV2Codec struct{}

func (protoV2Codec) Marshal(v interface{}) ([]byte, error) {
	return proto.Marshal(v.(proto.Message))
}

func (protoV2Codec) Unmarshal(data []byte, v interface{}) error {
	return proto.Unmarshal(data, v.(proto.Message))
}

func (protoV2Codec) Name() string { return "proto" }

func init() { encoding.RegisterCodec(protoV2Codec{}) }

func main() {
	addr := flag.String("addr", "127.0.0.1:50051", "sidecar address")
	base := flag.String("base", "items", "base name")
	text := flag.String("text", "", "text query")
	id := flag.String("id", "", "query by stored item id")
	topK := flag.Int("top-k", 5, "hits to return")
	fields := flag.String("fields", "", "comma-separated stored fields to return (label, attrs)")
	batch := flag.Bool("batch", false, "also send the query and a bad one in one SearchBatch")
	token := flag.String("token", os.Getenv("MMSEARCH_CLIENT_TOKEN"), "bearer token, if the sidecar wants one")
	flag.Parse()
	if (*text == "") == (*id == "") {
		fmt.Fprintln(os.Stderr, "give exactly one of -text or -id")
		os.Exit(2)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if *token != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+*token)
	}
	conn, err := grpc.DialContext(ctx, *addr, grpc.WithInsecure(), grpc.WithBlock())
	if err != nil {
		fail("connect", err)
	}
	defer conn.Close()

	info, err := pb.NewInfoServiceClient(conn).Info(ctx, &pb.InfoRequest{})
	if err != nil {
		fail("Info", err)
	}
	fmt.Printf("model %s (%s), widths %v, max top_k %d\n", info.ModelName, info.ModelId,
		info.Widths, info.MaxTopK)

	query := &pb.Query{}
	if *id != "" {
		query.Id = id
	} else {
		query.Text = text
	}
	request := &pb.SearchRequest{Base: *base, Query: query, TopK: int32(*topK)}
	if *fields != "" {
		request.OutputFields = strings.Split(*fields, ",")
	}
	reply, err := pb.NewSearchServiceClient(conn).Search(ctx, request)
	if err != nil {
		fail("Search", err)
	}
	candidates := make([]*pb.RerankCandidate, 0, len(reply.Hits))
	for rank, hit := range reply.Hits {
		fmt.Printf("search %d\t%s\t%.4f\tann=%.4f refine=%.4f%s\n", rank+1, hit.Id, hit.Score,
			hit.Stages.GetAnn(), hit.Stages.GetRefine(), formatFields(hit.Fields))
		candidates = append(candidates, &pb.RerankCandidate{
			Source: &pb.RerankCandidate_Id{Id: hit.Id}})
	}
	fmt.Printf("timings ms: %v\n", reply.Metadata.TimingsMs)
	if *batch {
		missing := "no-such-item"
		batched, err := pb.NewSearchServiceClient(conn).SearchBatch(ctx, &pb.SearchBatchRequest{
			Requests: []*pb.SearchRequest{request, {Base: *base, TopK: int32(*topK),
				Query: &pb.Query{Id: &missing}}}})
		if err != nil {
			fail("SearchBatch", err)
		}
		for i, item := range batched.Items {
			if e := item.GetError(); e != nil {
				fmt.Printf("batch %d\terror\t%s\n", i, e.Code)
			} else {
				fmt.Printf("batch %d\thits\t%d\n", i, len(item.GetResponse().Hits))
			}
		}
	}

	reranked, err := pb.NewRerankServiceClient(conn).Rerank(ctx, &pb.RerankRequest{
		Base: *base, Query: query, Candidates: candidates})
	if err != nil {
		fail("Rerank", err)
	}
	for rank, result := range reranked.Results {
		fmt.Printf("rerank %d\t%s\t%.4f\n", rank+1, reply.Hits[result.Index].Id, result.Score)
	}
}

func fail(what string, err error) {
	fmt.Fprintf(os.Stderr, "%s: %v\n", what, err)
	os.Exit(1)
}

// formatFields prints a hit's stored fields as name=value, sorted by name, one typed
// Value each (strings quoted, a null attr as null).
func formatFields(fields map[string]*pb.Value) string {
	if len(fields) == 0 {
		return ""
	}
	names := make([]string, 0, len(fields))
	for name := range fields {
		names = append(names, name)
	}
	sort.Strings(names)
	parts := make([]string, 0, len(names))
	for _, name := range names {
		var text string
		switch v := fields[name].Kind.(type) {
		case *pb.Value_StringValue:
			text = strconv.Quote(v.StringValue)
		case *pb.Value_IntValue:
			text = strconv.FormatInt(v.IntValue, 10)
		case *pb.Value_DoubleValue:
			text = strconv.FormatFloat(v.DoubleValue, 'g', -1, 64)
		case *pb.Value_BoolValue:
			text = strconv.FormatBool(v.BoolValue)
		default:
			text = "null"
		}
		parts = append(parts, name+"="+text)
	}
	return "\t" + strings.Join(parts, " ")
}
