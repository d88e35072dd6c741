"""Which load balancer listeners of a region name an ACM ARN, asked of ELBv2 itself.

ACM's InUseBy is not trusted for this: moto sets it only when a listener is created with
the certificate and never clears it, and AWS updates it with a delay. The listeners
(default certificate and SNI list) say what is used right now.
"""

from __future__ import annotations

from typing import Any

from certman.aws.errors import aws_call
from certman.errors import DeployError


def listeners_using(elb: Any, arn: str) -> list[str]:
    """The ARNs of the region's listeners whose default certificate or SNI list holds ``arn``."""
    using: list[str] = []
    with aws_call("elasticloadbalancing:DescribeLoadBalancers", arn, DeployError):
        balancers = [
            str(lb["LoadBalancerArn"])
            for page in elb.get_paginator("describe_load_balancers").paginate()
            for lb in page.get("LoadBalancers", [])
        ]
    for lb_arn in balancers:
        with aws_call("elasticloadbalancing:DescribeListeners", lb_arn, DeployError):
            listeners = [
                item
                for page in elb.get_paginator("describe_listeners").paginate(LoadBalancerArn=lb_arn)
                for item in page.get("Listeners", [])
            ]
        for listener in listeners:
            listener_arn = str(listener["ListenerArn"])
            held = {str(c["CertificateArn"]) for c in listener.get("Certificates") or []}
            if arn not in held and listener.get("Protocol") in ("HTTPS", "TLS"):
                held |= _listener_certificates(elb, listener_arn)
            if arn in held:
                using.append(listener_arn)
    return using


def _listener_certificates(elb: Any, listener_arn: str) -> set[str]:
    with aws_call("elasticloadbalancing:DescribeListenerCertificates", listener_arn, DeployError):
        pages = elb.get_paginator("describe_listener_certificates").paginate(
            ListenerArn=listener_arn
        )
        return {str(c["CertificateArn"]) for page in pages for c in page.get("Certificates", [])}
