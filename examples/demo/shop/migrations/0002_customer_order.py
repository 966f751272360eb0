from decimal import Decimal

from django.db import migrations, models

CUSTOMERS = ["Ada", "Grace", "Linus", "Guido", "Barbara", "Ken", "Margaret", "Dennis"]


def seed(apps, schema_editor):
    # Historical models: these inserts are set-up, not traffic (no django_model_inserts_total).
    Customer = apps.get_model("shop", "Customer")
    Order = apps.get_model("shop", "Order")
    customers = Customer.objects.bulk_create(Customer(name=n) for n in CUSTOMERS)
    Order.objects.bulk_create(
        Order(customer=customers[i % len(customers)], total=Decimal(10 + 3 * i)) for i in range(16)
    )


class Migration(migrations.Migration):
    dependencies = [("shop", "0001_initial")]

    operations = [
        migrations.CreateModel(
            name="Customer",
            fields=[
                (
                    "id",
                    models.AutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID"),
                ),
                ("name", models.CharField(max_length=100)),
            ],
        ),
        migrations.CreateModel(
            name="Order",
            fields=[
                (
                    "id",
                    models.AutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID"),
                ),
                ("total", models.DecimalField(decimal_places=2, max_digits=8)),
                (
                    "customer",
                    models.ForeignKey(
                        on_delete=models.deletion.CASCADE, related_name="orders", to="shop.customer"
                    ),
                ),
            ],
        ),
        migrations.RunPython(seed, migrations.RunPython.noop),
    ]
