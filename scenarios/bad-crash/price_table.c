/* A bad patch for pricer's price_item: it "speeds up" the unit price with a
 * lookup table but indexes it with the raw SKU instead of sku % 9000. Small
 * SKUs work, which is why a unit test with hand-picked SKUs would pass it;
 * real traffic reads far outside the table and the service dies (SIGSEGV). */
#include <stdint.h>

static uint16_t unit_price[9000];
static int ready;

uint64_t price_item(uint32_t sku, uint32_t qty) {
  if (!ready) {
    for (uint32_t i = 0; i < 9000; ++i) unit_price[i] = (uint16_t)(100 + i);
    ready = 1;
  }
  uint64_t unit = unit_price[sku]; /* BUG: should be unit_price[sku % 9000] */
  uint64_t discount = qty / 10 > 30 ? 30 : qty / 10;
  return unit * qty * (100 - discount) / 100;
}
