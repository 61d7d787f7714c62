#!/usr/bin/env bash
# Provision the `lab` machine: install the lab from the copied checkout and run
# JupyterLab as a service, so it comes back after `vagrant reload` too.
# Vagrant runs this as root inside the guest; $1 is the host's JupyterLab port.
set -euo pipefail
HOST_PORT="${1:-8888}"
LAB_REPO=/home/vagrant/lab
TOKEN_FILE=/etc/labsupport-jupyter.env

"$LAB_REPO/lab" install

# One token per VM, kept across reboots; only root can read it.
if [ ! -f "$TOKEN_FILE" ]; then
    umask 077
    printf 'JUPYTER_TOKEN=%s\n' "$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')" >"$TOKEN_FILE"
fi

# JupyterLab listens on the guest's own address: QEMU/VirtualBox deliver the
# host's 127.0.0.1:$HOST_PORT there, and nothing else reaches this guest.
cat >/etc/systemd/system/lab-jupyter.service <<EOF
[Unit]
Description=The virtualization lab's JupyterLab
After=network-online.target

[Service]
EnvironmentFile=$TOKEN_FILE
Environment=LAB_IP=0.0.0.0
ExecStart=$LAB_REPO/lab up
Restart=on-failure

[Install]
WantedBy=multi-user.target
EOF
systemctl daemon-reload
systemctl enable --now lab-jupyter.service

. "$TOKEN_FILE"
echo "JupyterLab: http://127.0.0.1:$HOST_PORT/lab?token=$JUPYTER_TOKEN"
