"""Customer relationship: CouponCRM-v0; `policies` holds RFM rules and the myopic uplift policy."""

from ecomrl_jax.envs.crm.coupon_crm import CouponCRM

__all__ = ["CouponCRM"]
