// A Go client for the mmsearch sidecar: Info, then Search by text or by stored id, then
// Rerank of the hits by id. Built offline from Debian's packages (see README.md here).
//
//	mmsearch-go -addr 127.0.0.1:50051 -base items -id google:1F600
//	mmsearch-go -addr 127.0.0.1:50051 -base items -text "red heart" -top-k 5
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
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
	reply, err := pb.NewSearchServiceClient(conn).Search(ctx, &pb.SearchRequest{
		Base: *base, Query: query, TopK: int32(*topK)})
	if err != nil {
		fail("Search", err)
	}
	candidates := make([]*pb.RerankCandidate, 0, len(reply.Hits))
	for rank, hit := range reply.Hits {
		fmt.Printf("search %d\t%s\t%.4f\tann=%.4f refine=%.4f\n", rank+1, hit.Id, hit.Score,
			hit.Stages.GetAnn(), hit.Stages.GetRefine())
		candidates = append(candidates, &pb.RerankCandidate{
			Source: &pb.RerankCandidate_Id{Id: hit.Id}})
	}
	fmt.Printf("timings ms: %v\n", reply.Metadata.TimingsMs)

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
