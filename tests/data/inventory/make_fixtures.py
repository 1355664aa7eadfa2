#!/usr/bin/python3
"""Builds the /proc + /sys fixture trees that tests/unit/agent/test_inventory.c
reads: dgx/ (a DGX H100-like GPU node), commodity/ (a one-socket box) and
hostile/ (garbage, loops and escapes). The trees are committed; rerun this
script (from anywhere) only to change them: it deletes and rewrites them.

The layout follows the kernel's: devices live under sys/devices/..., and
sys/block, sys/class/net, sys/bus/pci/devices hold relative symlinks to them,
with driver links pointing at sys/bus/pci/drivers/<name> (left dangling: only
the link's last component is read).

dgx/inventory.json and commodity/inventory.json are what the agent makes of
those trees, for tests/unit/pxe/test_rules.c (profile rules). They are
rewritten too when the agent is given:
    tests/data/inventory/make_fixtures.py --agent BUILD/agent/rackboot-agent
which runs `rackboot-agent inventory --root tests/data/inventory/<x> --pretty`."""
import os
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def write(root, rel, data):
    path = os.path.join(root, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    mode = "wb" if isinstance(data, bytes) else "w"
    with open(path, mode) as f:
        f.write(data)


def link(root, rel, target):
    path = os.path.join(root, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    os.symlink(target, path)


def pci_dev(root, bus, addr, vendor, device, cls, sub_v, sub_d, driver, numa, ib=None):
    d = f"sys/devices/pci0000:{bus}/{addr}"
    for k, v in (("vendor", vendor), ("device", device), ("class", cls),
                 ("subsystem_vendor", sub_v), ("subsystem_device", sub_d),
                 ("numa_node", str(numa))):
        write(root, f"{d}/{k}", v + "\n")
    if driver:
        link(root, f"{d}/driver", f"../../../bus/pci/drivers/{driver}")
    if ib:
        write(root, f"{d}/infiniband/{ib}/node_type", "1: CA\n")
    link(root, f"sys/bus/pci/devices/{addr}", f"../../../devices/pci0000:{bus}/{addr}")
    return d


def net_dev(root, pcidir, name, addr, speed, carrier, typ="1"):
    d = f"{pcidir}/net/{name}"
    write(root, f"{d}/address", addr + "\n")
    write(root, f"{d}/type", typ + "\n")
    write(root, f"{d}/speed", speed + "\n")
    write(root, f"{d}/carrier", carrier + "\n")
    link(root, f"{d}/device", "../../../" + os.path.basename(pcidir))
    link(root, f"sys/class/net/{name}", "../../" + d[len("sys/"):])


def virtual_net(root, name, addr):
    d = f"sys/devices/virtual/net/{name}"
    write(root, f"{d}/address", addr + "\n")
    write(root, f"{d}/type", "772\n" if name == "lo" else "1\n")
    link(root, f"sys/class/net/{name}", f"../../devices/virtual/net/{name}")


def block(root, devdir, name, sectors, rotational, removable="0"):
    d = f"{devdir}/{name}" if "/nvme/" in devdir else f"{devdir}/block/{name}"
    write(root, f"{d}/size", f"{sectors}\n")
    write(root, f"{d}/removable", removable + "\n")
    write(root, f"{d}/queue/rotational", rotational + "\n")
    link(root, f"sys/block/{name}", "../" + d[len("sys/"):])
    return d


def vpd80(serial):
    s = serial.encode()
    return bytes([0, 0x80, len(s) >> 8, len(s) & 0xFF]) + s


def cpuinfo(model, sockets, cores, threads_per_core, core_stride=1):
    out = []
    n = 0
    for t in range(threads_per_core):
        for s in range(sockets):
            for c in range(cores):
                out.append(f"processor\t: {n}\nvendor_id\t: GenuineIntel\n"
                           f"model name\t: {model}\nphysical id\t: {s}\n"
                           f"siblings\t: {cores * threads_per_core}\n"
                           f"core id\t\t: {c * core_stride}\ncpu cores\t: {cores}\n\n")
                n += 1
    return "".join(out)


def dmi(root, vals):
    link(root, "sys/class/dmi/id", "../../devices/virtual/dmi/id")
    for k, v in vals.items():
        write(root, f"sys/devices/virtual/dmi/id/{k}", v + "\n")


def make_dgx(root):
    write(root, "proc/cpuinfo", cpuinfo("Intel(R) Xeon(R) Platinum 8480CL", 2, 56, 2, 1))
    write(root, "proc/meminfo", "MemTotal:       2113442580 kB\nMemFree:        2000000000 kB\n"
          "MemAvailable:   2050000000 kB\n")
    write(root, "sys/firmware/efi/fw_platform_size", "64\n")
    dmi(root, {"sys_vendor": "NVIDIA", "product_name": "DGXH100",
               "product_serial": "1660223000123", "board_serial": "1653123000456",
               "bios_version": "01.00.03"})
    pci_dev(root, "00", "0000:00:00.0", "0x8086", "0x09a2", "0x060000", "0x8086", "0x0000",
            None, 0)
    ahci = pci_dev(root, "00", "0000:00:17.0", "0x8086", "0x7ae2", "0x010601", "0x10de",
                   "0x16d4", "ahci", 0)
    pci_dev(root, "00", "0000:03:00.0", "0x1a03", "0x2000", "0x030000", "0x1a03", "0x2000",
            "ast", 0)
    gpus = ["18", "2a", "3a", "5d", "9a", "ab", "ba", "db"]
    for i, b in enumerate(gpus):
        pci_dev(root, b[0] + "0", f"0000:{b}:00.0", "0x10de", "0x2330", "0x030200", "0x10de",
                "0x16c1", "nvidia", 0 if i < 4 else 1)
    for i, b in enumerate(["05", "06", "07", "08"]):  # NVSwitch: a bridge, not a GPU
        pci_dev(root, "00", f"0000:{b}:00.0", "0x10de", "0x22a3", "0x068000", "0x10de",
                "0x1796", "nvidia", 0)
    hcas = ["1a", "3c", "9c", "bc"]
    for i, b in enumerate(hcas):
        d = pci_dev(root, b[0] + "0", f"0000:{b}:00.0", "0x15b3", "0x1021", "0x020700",
                    "0x15b3", "0x0041", "mlx5_core", 0 if i < 2 else 1, ib=f"mlx5_{i}")
        net_dev(root, d, f"ibp{int(b, 16)}s0",
                f"00:00:10:49:fe:80:00:00:00:00:00:00:a0:88:c2:03:00:1e:8b:{i:02x}",
                "400000", "1", typ="32")
    e0 = pci_dev(root, "40", "0000:4b:00.0", "0x8086", "0x1572", "0x020000", "0x8086",
                 "0x0000", "i40e", 0)
    e1 = pci_dev(root, "40", "0000:4b:00.1", "0x8086", "0x1572", "0x020000", "0x8086",
                 "0x0000", "i40e", 0)
    net_dev(root, e0, "eno1", "7C:C2:55:12:34:56", "25000", "1")
    net_dev(root, e1, "eno2", "7c:c2:55:12:34:57", "10000", "1")
    virtual_net(root, "lo", "00:00:00:00:00:00")
    virtual_net(root, "docker0", "02:42:ac:11:00:01")
    for i, b in enumerate(["c1", "c2"]):
        d = pci_dev(root, "c0", f"0000:{b}:00.0", "0x144d", "0xa80a", "0x010802", "0x144d",
                    "0xa813", "nvme", 1)
        ctrl = f"{d}/nvme/nvme{i}"
        write(root, f"{ctrl}/model", "SAMSUNG MZQL23T8HCLS-00A07               \n")
        write(root, f"{ctrl}/serial", f"S64HNE0T50{i}123      \n")
        write(root, f"{ctrl}/firmware_rev", "GDC5602Q\n")
        nd = block(root, ctrl, f"nvme{i}n1", 7501476528, "0")
        link(root, f"{nd}/device", "../../nvme" + str(i))
    scsi = f"{ahci}/ata1/host0/target0:0:0/0:0:0:0"
    write(root, f"{scsi}/vendor", "ATA     \n")
    write(root, f"{scsi}/model", "ST8000NM000A-2KE\n")
    write(root, f"{scsi}/vpd_pg80", vpd80("    WKD0ABCD"))
    sd = block(root, scsi, "sda", 15628053168, "1")
    link(root, f"{sd}/device", "../../../0:0:0:0")
    block(root, "sys/devices/virtual", "loop0", 0, "1")


def make_commodity(root):
    write(root, "proc/cpuinfo", cpuinfo("Intel(R) Core(TM) i5-8500 CPU @ 3.00GHz", 1, 6, 1))
    write(root, "proc/meminfo", "MemTotal:       16303132 kB\nMemFree:         1234567 kB\n")
    dmi(root, {"sys_vendor": "Dell Inc.", "product_name": "OptiPlex 3060",
               "bios_version": "1.22.0"})  # product_serial unreadable without root
    pci_dev(root, "00", "0000:00:00.0", "0x8086", "0x3ec2", "0x060000", "0x1028", "0x0871",
            None, -1)
    pci_dev(root, "00", "0000:00:02.0", "0x8086", "0x3e92", "0x030000", "0x1028", "0x0871",
            "i915", -1)
    ahci = pci_dev(root, "00", "0000:00:17.0", "0x8086", "0xa352", "0x010601", "0x1028",
                   "0x0871", "ahci", -1)
    nic = pci_dev(root, "00", "0000:01:00.0", "0x10ec", "0x8168", "0x020000", "0x1028",
                  "0x0871", "r8169", -1)
    net_dev(root, nic, "enp1s0", "d8:9e:f3:00:11:22", "-1", "0")
    virtual_net(root, "lo", "00:00:00:00:00:00")
    scsi = f"{ahci}/ata1/host0/target0:0:0/0:0:0:0"
    write(root, f"{scsi}/vendor", "ATA     \n")
    write(root, f"{scsi}/model", "KINGSTON SA400S3\n")
    write(root, f"{scsi}/vpd_pg80", vpd80("50026B7782A1B2C3    "))
    sd = block(root, scsi, "sda", 468862128, "0")
    link(root, f"{sd}/device", "../../../0:0:0:0")
    block(root, "sys/devices/virtual", "loop0", 2048, "1")
    block(root, "sys/devices/virtual", "zram0", 8388608, "0")
    block(root, "sys/devices/virtual", "sr0", 0, "1", removable="1")


def make_hostile(root):
    junk = bytes(range(256)) * 4
    write(root, "proc/cpuinfo",
          b"processor\t: 0\nmodel name\t: " + b"A" * 100000 + b"\nphysical id\t: -5\n"
          b"core id\t: 99999999999999999999999\n\n"
          b"processor : x\nphysical id : 0x1\n" + junk + b"\n\n"
          b"processor\t: 2\nphysical id\t: 3\ncore id\t: 1\x00\x00\nno colon here\n"
          b"processor\t: 3\nphysical id\t: 3\ncore id\t: 7")
    write(root, "proc/meminfo", "MemTotal:       99999999999999999999999 kB\n")
    link(root, "sys/firmware/efi", "efi")  # a loop: not UEFI
    link(root, "sys/class/dmi/id", "../../devices/virtual/dmi/id")
    dmi_dir = "sys/devices/virtual/dmi/id"
    write(root, f"{dmi_dir}/sys_vendor", b"Evil\"Corp\\\x1b[31m\xff\xfe\x00tail\n")
    write(root, f"{dmi_dir}/product_name", "\n")
    write(root, f"{dmi_dir}/bios_version", "9" * 10000)
    link(root, f"{dmi_dir}/product_serial", "/etc/machine-id")  # absolute: refused
    link(root, f"{dmi_dir}/board_serial", "../../../../../../../../etc/hostname")  # escapes
    # disks
    d = "sys/devices/virtual/block"
    write(root, f"{d}/sdx/size", str(2**70) + "\n")
    write(root, f"{d}/sdx/device/model", b"\x01\xffMODEL\x1b\"" + junk)
    write(root, f"{d}/sdx/device/vpd_pg80", b"\x00\x80\xff\xffSHORT")
    write(root, f"{d}/sdx/queue/rotational", "2\n")
    write(root, f"{d}/sdx/removable", "yes\n")
    link(root, "sys/block/sdx", "../devices/virtual/block/sdx")
    write(root, f"{d}/sdy/size", "-5\n")
    write(root, f"{d}/sdy/device/serial", b"\x00\x00\x00")
    write(root, f"{d}/sdy/device/vpd_pg80", b"\x00\x80\x00\x03\x00\x00\x00")
    os.makedirs(os.path.join(root, f"{d}/sdy/queue/rotational"))  # a directory, not a file
    write(root, f"{d}/sdy/queue/rotational/x", "1\n")
    link(root, "sys/block/sdy", "../devices/virtual/block/sdy")
    link(root, "sys/block/sdz", "sdz")  # self loop
    link(root, "sys/block/sdv", "/dev")  # absolute: refused
    link(root, "sys/block/sdu", "../../../../../../../../../sys/block")  # escapes
    write(root, "sys/block/sdw", "not a directory\n")
    # NICs
    p = pci_dev(root, "00", "0000:00:01.0", "0xGGGG", "0x12", "0x030200", "junk", "",
                "../../../../../../../../../../../etc/passwd", "99999999999")
    net_dev(root, p, "eth0", "zz:zz:zz:zz:zz:zz", "4294967295", "junk", typ="99999999999")
    n1 = "sys/devices/virtual/net/eth1"
    write(root, f"{n1}/address", "00:11:22:33:44:55\n")
    link(root, f"{n1}/device", "device")  # loop: treated as virtual
    link(root, "sys/class/net/eth1", "../../devices/virtual/net/eth1")
    n2 = "sys/devices/virtual/net/eth2"
    write(root, f"{n2}/address", "00:11:22:33:44" + ":55" * 40 + "\n")
    write(root, f"{n2}/speed", "1" * 5000 + "\n")
    link(root, f"{n2}/device", "/sys/devices")  # absolute: refused
    link(root, "sys/class/net/eth2", "../../devices/virtual/net/eth2")
    # PCI
    pci_dev(root, "00", "0000:00:02.0", "0x10de", "0x2330", "0x0302000000", "0x10de", "0x16c1",
            "nvidia", 0)
    pci_dev(root, "00", "0000:00:03.0", "10de", "2330", "030200", "10de", "16c1", "nvidia", 1)
    q = pci_dev(root, "00", "0000:00:04.0", "0x15b3", "0x1021", "0x020700", "0x15b3", "0x0041",
                "mlx5_core", -7)
    write(root, f"{q}/vendor", junk * 8)
    link(root, f"{q}/infiniband", "infiniband")
    e = "sys/devices/pci0000:00/0000:00:05.0"
    write(root, f"{e}/config", junk)  # every attribute missing
    link(root, "sys/bus/pci/devices/0000:00:05.0", "../../../devices/pci0000:00/0000:00:05.0")
    link(root, "sys/bus/pci/devices/0000:00:06.0", "0000:00:06.0")


def main():
    agent = None
    if len(sys.argv) == 3 and sys.argv[1] == "--agent":
        agent = sys.argv[2]
    elif len(sys.argv) != 1:
        sys.exit("usage: make_fixtures.py [--agent BUILD/agent/rackboot-agent]")
    for name, fn in (("dgx", make_dgx), ("commodity", make_commodity),
                     ("hostile", make_hostile)):
        root = os.path.join(HERE, name)
        keep = os.path.join(root, "inventory.json")
        saved = None
        if os.path.exists(keep):
            with open(keep, "rb") as f:
                saved = f.read()
        shutil.rmtree(root, ignore_errors=True)
        os.makedirs(root)
        fn(root)
        if name == "hostile":
            continue
        if agent:
            out = subprocess.run([agent, "inventory", "--root", root, "--pretty"],
                                 check=True, stdout=subprocess.PIPE).stdout
            with open(keep, "wb") as f:
                f.write(out)
        elif saved is not None:
            # Without the agent the stored document stays; rerun with
            # --agent if the tree changed.
            with open(keep, "wb") as f:
                f.write(saved)


if __name__ == "__main__":
    main()
