# tests/e2e/natlab/lib.sh: the NAT lab's network, for tests/e2e/natlab.sh.
# Source it after tests/e2e/lib.sh.
#
# The internet is a bridge (namespace "net") in 198.18.0.0/16; everything
# on it is on-link, so no router needs a route. Each node sits on a LAN
# 198.19.K.0/24 behind a router namespace "rK" whose WAN address is
# 198.18.10.K/16 and whose LAN address is 198.19.K.1. The routers do NAT
# with nftables, one kind each (see nat_router):
#
#   eim        endpoint-independent mapping (Linux keeps the source port),
#              address-and-port-dependent filtering: plain masquerade
#   fullcone   eim, plus every inbound datagram to the node's mapped port
#              let in (endpoint-independent filtering)
#   symmetric  masquerade fully-random (iptables: --random-fully): a new
#              port for every destination
#   noudp      eim for TCP, every UDP datagram from the LAN dropped
#
# Every router drops what arrives unsolicited on its WAN side (in the
# filter hooks, so conntrack never confirms an entry for it: an early
# inbound datagram cannot claim the mapping the node's own first datagram
# will want, which would make an eim router pick another port, i.e. turn
# symmetric by accident). Each drop rule counts, see router_drops.

NL_INET_NS=net

# nl_inet_attach TAG IFNAME ADDR/16 : namespace TAG on the internet bridge
# as IFNAME with ADDR.
nl_inet_attach() {
    local tag=$1 ifn=$2 addr=$3 n sw
    n=$(ns "$tag") || return 1
    if [ -z "${E2E_NSMAP[$NL_INET_NS]:-}" ]; then
        ns_create "$NL_INET_NS"
        nsx "$NL_INET_NS" ip link add br0 type bridge || die "internet bridge failed"
        nsx "$NL_INET_NS" ip link set br0 up
    fi
    sw=$(ns "$NL_INET_NS")
    ip link add "$ifn" netns "$n" type veth peer name "p$tag" netns "$sw" ||
        die "veth $tag<->internet failed"
    netns_exec "$sw" ip link set "p$tag" master br0
    netns_exec "$sw" ip link set "p$tag" up
    netns_exec "$n" ip addr add "$addr" dev "$ifn"
    netns_exec "$n" ip link set "$ifn" up
}

# nl_veth TAG1 IF1 ADDR1/LEN TAG2 IF2 ADDR2/LEN : a veth pair, IF1 in TAG1
# and IF2 in TAG2 (an address "-" leaves that end without one).
nl_veth() {
    local t1=$1 i1=$2 a1=$3 t2=$4 i2=$5 a2=$6 n1 n2
    n1=$(ns "$t1") && n2=$(ns "$t2") || return 1
    ip link add "$i1" netns "$n1" type veth peer name "$i2" netns "$n2" ||
        die "veth $t1/$i1 <-> $t2/$i2 failed"
    [ "$a1" = - ] || netns_exec "$n1" ip addr add "$a1" dev "$i1"
    [ "$a2" = - ] || netns_exec "$n2" ip addr add "$a2" dev "$i2"
    netns_exec "$n1" ip link set "$i1" up
    netns_exec "$n2" ip link set "$i2" up
}

# nat_router TAG KIND WAN_IF LAN_IF LAN_NET [FULLCONE_HOST] : forwarding
# on, and KIND's rules in table inet natlab (nat between LAN_IF and WAN_IF
# for sources in LAN_NET). fullcone needs the LAN host whose port it opens
# (nat_fullcone_open, once the node's port is known). The table also holds
# the chains miniupnpd fills (prerouting_upnp, postrouting_upnp,
# forward_upnp), empty unless a miniupnpd runs; forward_upnp is consulted
# for the router's own input too, since miniupnpd opens its STUN probe
# ports there. A LAN bridge's own traffic (two hosts on one LAN) passes:
# with br_netfilter loaded, bridged frames go through the forward hook.
nat_router() {
    local tag=$1 kind=$2 wan=$3 lan=$4 net=$5 masq="masquerade"
    local udp_rule="" in_rule=""
    case $kind in
    eim | fullcone) ;;
    symmetric) masq="masquerade fully-random" ;;
    noudp) udp_rule="iifname \"$lan\" meta l4proto udp counter name udp_dropped drop" ;;
    *) die "nat_router: unknown kind $kind" ;;
    esac
    [ "$kind" = fullcone ] && in_rule="iifname \"$wan\" ct status dnat accept"
    nsx "$tag" sysctl -qw net.ipv4.ip_forward=1 || die "ip_forward in $tag failed"
    nsx "$tag" sysctl -qw net.bridge.bridge-nf-call-iptables=0 2>/dev/null
    nsx "$tag" nft -f - <<EOF || die "nft in router $tag failed"
table inet natlab {
    counter unsolicited { }
    counter udp_dropped { }
    chain prerouting_upnp { }
    chain postrouting_upnp { }
    chain forward_upnp { }
    chain fullcone { }
    chain nat_pre {
        type nat hook prerouting priority dstnat; policy accept;
        jump prerouting_upnp
        jump fullcone
    }
    chain nat_post {
        type nat hook postrouting priority srcnat; policy accept;
        jump postrouting_upnp
        oifname "$wan" ip saddr $net $masq
    }
    chain filter_fwd {
        type filter hook forward priority filter; policy drop;
        ct state established,related accept
        $udp_rule
        iifname "$lan" oifname "$wan" accept
        iifname "$lan" oifname "$lan" accept
        $in_rule
        iifname "$wan" jump forward_upnp
        iifname "$wan" counter name unsolicited drop
    }
    chain filter_in {
        type filter hook input priority filter; policy accept;
        iifname "$wan" ct state established,related accept
        iifname "$wan" jump forward_upnp
        iifname "$wan" counter name unsolicited drop
    }
}
EOF
}

# nat_fullcone_open TAG WAN_IF HOST PORT : full cone for HOST's UDP PORT:
# its mapping keeps the port (masquerade to it, ahead of the general rule)
# and every datagram that comes to that port on the WAN side goes to HOST,
# whoever sent it.
nat_fullcone_open() {
    local tag=$1 wan=$2 host=$3 port=$4
    nsx "$tag" nft add rule inet natlab fullcone iifname "$wan" udp dport "$port" dnat ip to "$host:$port" &&
        nsx "$tag" nft insert rule inet natlab nat_post oifname "$wan" ip saddr "$host" udp sport "$port" masquerade to ":$port"
}

# router_drops TAG : datagrams/packets the router dropped as unsolicited
# inbound, and UDP it dropped from the LAN ("U D").
router_drops() {
    nsx "$1" nft -j list counters table inet natlab 2>/dev/null | "$PY" -c '
import json, sys
c = {x["counter"]["name"]: x["counter"]["packets"]
     for x in json.load(sys.stdin)["nftables"] if "counter" in x}
print(c.get("unsolicited", 0), c.get("udp_dropped", 0))'
}
