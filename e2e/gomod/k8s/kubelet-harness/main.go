// kubelet-harness plays the device-manager half of kubelet for one fake node: there is no
// kubelet in the e2e (KWOK fakes the node), so this program accepts a device plugin's
// registration on <plugin-dir>/kubelet.sock, follows its ListAndWatch, and for every pod bound
// to the node that asks for the plugin's resource calls GetPreferredAllocation and Allocate per
// container (init containers first, in spec order, pods in creation order), as kubelet does.
// Each pod's answers are written to <out>/<namespace>.<name>.json for the tests to check.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	v1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	pluginapi "k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"
)

type containerResult struct {
	Name      string            `json:"name"`
	Init      bool              `json:"init"`
	Requested int               `json:"requested"`
	Preferred []string          `json:"preferred"`
	DeviceIDs []string          `json:"deviceIDs"`
	Envs      map[string]string `json:"envs"`
	Mounts    []string          `json:"mounts"`
	Error     string            `json:"error,omitempty"`
}

type podResult struct {
	Namespace  string            `json:"namespace"`
	Name       string            `json:"name"`
	UID        string            `json:"uid"`
	Node       string            `json:"node"`
	Containers []containerResult `json:"containers"`
}

type harness struct {
	pluginapi.UnimplementedRegistrationServer
	dir, node, resource, out string
	client                   kubernetes.Interface

	mu        sync.Mutex
	plugin    pluginapi.DevicePluginClient
	preferred bool
	devices   map[string]bool     // id -> healthy
	allocated map[types.UID][]string // pod -> device ids it holds
}

func (h *harness) Register(ctx context.Context, r *pluginapi.RegisterRequest) (*pluginapi.Empty, error) {
	if r.ResourceName != h.resource {
		return nil, fmt.Errorf("harness serves %s, not %s", h.resource, r.ResourceName)
	}
	conn, err := grpc.NewClient("unix://"+filepath.Join(h.dir, r.Endpoint),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	c := pluginapi.NewDevicePluginClient(conn)
	h.mu.Lock()
	h.plugin = c
	h.preferred = r.Options != nil && r.Options.GetPreferredAllocationAvailable
	h.mu.Unlock()
	log.Printf("plugin registered: %s at %s (preferred allocation: %v)", r.ResourceName, r.Endpoint, h.preferred)
	go h.listAndWatch(c)
	return &pluginapi.Empty{}, nil
}

func (h *harness) listAndWatch(c pluginapi.DevicePluginClient) {
	stream, err := c.ListAndWatch(context.Background(), &pluginapi.Empty{})
	if err != nil {
		log.Printf("ListAndWatch: %v", err)
		return
	}
	for {
		resp, err := stream.Recv()
		if err != nil {
			log.Printf("ListAndWatch ended: %v", err)
			return
		}
		m := map[string]bool{}
		for _, d := range resp.Devices {
			m[d.ID] = d.Health == pluginapi.Healthy
		}
		h.mu.Lock()
		h.devices = m
		h.mu.Unlock()
		log.Printf("device list: %d devices", len(m))
	}
}

func request(c v1.Container, resource string) int {
	q, ok := c.Resources.Limits[v1.ResourceName(resource)]
	if !ok {
		return 0
	}
	return int(q.Value())
}

// available: healthy devices no live pod holds, sorted.
func (h *harness) available() []string {
	held := map[string]bool{}
	for _, ids := range h.allocated {
		for _, id := range ids {
			held[id] = true
		}
	}
	var out []string
	for id, ok := range h.devices {
		if ok && !held[id] {
			out = append(out, id)
		}
	}
	sort.Strings(out)
	return out
}

func (h *harness) admit(ctx context.Context, pod *v1.Pod) {
	res := podResult{Namespace: pod.Namespace, Name: pod.Name, UID: string(pod.UID), Node: h.node}
	type ctr struct {
		c    v1.Container
		init bool
	}
	var all []ctr
	for _, c := range pod.Spec.InitContainers {
		all = append(all, ctr{c, true})
	}
	for _, c := range pod.Spec.Containers {
		all = append(all, ctr{c, false})
	}
	for _, x := range all {
		n := request(x.c, h.resource)
		if n == 0 {
			continue
		}
		cr := containerResult{Name: x.c.Name, Init: x.init, Requested: n}
		h.mu.Lock()
		avail := h.available()
		plugin, pref := h.plugin, h.preferred
		h.mu.Unlock()
		chosen := []string{}
		if pref {
			pr, err := plugin.GetPreferredAllocation(ctx, &pluginapi.PreferredAllocationRequest{
				ContainerRequests: []*pluginapi.ContainerPreferredAllocationRequest{{
					AvailableDeviceIDs: avail, AllocationSize: int32(n)}}})
			if err == nil && len(pr.ContainerResponses) == 1 {
				cr.Preferred = pr.ContainerResponses[0].DeviceIDs
				if len(cr.Preferred) == n {
					chosen = cr.Preferred
				}
			} else if err != nil {
				log.Printf("%s/%s %s: GetPreferredAllocation: %v", pod.Namespace, pod.Name, x.c.Name, err)
			}
		}
		if len(chosen) != n {
			if len(avail) < n {
				cr.Error = fmt.Sprintf("UnexpectedAdmissionError: %d devices available, %d requested", len(avail), n)
				res.Containers = append(res.Containers, cr)
				break
			}
			chosen = avail[:n]
		}
		cr.DeviceIDs = chosen
		actx, cancel := context.WithTimeout(ctx, 30*time.Second)
		ar, err := plugin.Allocate(actx, &pluginapi.AllocateRequest{
			ContainerRequests: []*pluginapi.ContainerAllocateRequest{{DevicesIds: chosen}}})
		cancel()
		if err != nil {
			cr.Error = err.Error()
			res.Containers = append(res.Containers, cr)
			break
		}
		h.mu.Lock()
		h.allocated[pod.UID] = append(h.allocated[pod.UID], chosen...)
		h.mu.Unlock()
		if len(ar.ContainerResponses) == 1 {
			cr.Envs = ar.ContainerResponses[0].Envs
			for _, m := range ar.ContainerResponses[0].Mounts {
				cr.Mounts = append(cr.Mounts, m.HostPath+":"+m.ContainerPath)
			}
		}
		res.Containers = append(res.Containers, cr)
	}
	b, _ := json.MarshalIndent(res, "", "  ")
	tmp := filepath.Join(h.out, "."+pod.Namespace+"."+pod.Name+".json")
	if err := os.WriteFile(tmp, b, 0o644); err == nil {
		_ = os.Rename(tmp, filepath.Join(h.out, pod.Namespace+"."+pod.Name+".json"))
	}
	log.Printf("admitted %s/%s: %d device containers", pod.Namespace, pod.Name, len(res.Containers))
}

func (h *harness) loop(ctx context.Context) {
	admitted := map[types.UID]bool{}
	for {
		time.Sleep(200 * time.Millisecond)
		h.mu.Lock()
		ready := h.plugin != nil && h.devices != nil
		h.mu.Unlock()
		if !ready {
			continue
		}
		pods, err := h.client.CoreV1().Pods("").List(ctx, metav1.ListOptions{FieldSelector: "spec.nodeName=" + h.node})
		if err != nil {
			log.Printf("list pods: %v", err)
			continue
		}
		live := map[types.UID]bool{}
		var todo []v1.Pod
		for _, p := range pods.Items {
			terminal := p.Status.Phase == v1.PodSucceeded || p.Status.Phase == v1.PodFailed
			if p.DeletionTimestamp != nil || terminal {
				continue
			}
			live[p.UID] = true
			if !admitted[p.UID] {
				todo = append(todo, p)
			}
		}
		h.mu.Lock()
		for uid := range h.allocated {
			if !live[uid] {
				delete(h.allocated, uid)
			}
		}
		h.mu.Unlock()
		sort.Slice(todo, func(i, j int) bool {
			return todo[i].CreationTimestamp.Before(&todo[j].CreationTimestamp) ||
				(todo[i].CreationTimestamp.Equal(&todo[j].CreationTimestamp) && todo[i].Name < todo[j].Name)
		})
		for i := range todo {
			admitted[todo[i].UID] = true
			h.admit(ctx, &todo[i])
		}
	}
}

func main() {
	h := &harness{devices: nil, allocated: map[types.UID][]string{}}
	kubeconfig := flag.String("kubeconfig", os.Getenv("KUBECONFIG"), "kubeconfig")
	flag.StringVar(&h.dir, "plugin-dir", "", "device-plugin directory (kubelet.sock is created here)")
	flag.StringVar(&h.node, "node", "", "node name")
	flag.StringVar(&h.resource, "resource", "nvidia.com/gpu", "resource the plugin serves")
	flag.StringVar(&h.out, "out", "", "directory for the per-pod results")
	flag.Parse()
	if h.dir == "" || h.node == "" || h.out == "" {
		log.Fatal("--plugin-dir, --node and --out are required")
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", *kubeconfig)
	if err != nil {
		log.Fatal(err)
	}
	h.client = kubernetes.NewForConfigOrDie(cfg)
	_ = os.MkdirAll(h.out, 0o755)
	sock := filepath.Join(h.dir, "kubelet.sock")
	_ = os.Remove(sock)
	lis, err := net.Listen("unix", sock)
	if err != nil {
		log.Fatal(err)
	}
	srv := grpc.NewServer()
	pluginapi.RegisterRegistrationServer(srv, h)
	go h.loop(context.Background())
	log.Printf("kubelet harness for node %s listening on %s", h.node, sock)
	log.Fatal(srv.Serve(lis))
}
