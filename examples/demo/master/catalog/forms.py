from django import forms

from catalog.models import Category, Item


class ItemForm(forms.ModelForm):
    available_from = forms.DateTimeField(
        widget=forms.DateTimeInput(attrs={'type': 'datetime-local'}, format='%Y-%m-%dT%H:%M'),
        input_formats=['%Y-%m-%dT%H:%M', '%Y-%m-%dT%H:%M:%S', '%Y-%m-%d %H:%M:%S', '%Y-%m-%d %H:%M'],
    )

    class Meta:
        model = Item
        fields = ['name', 'category', 'price', 'in_stock', 'available_from']
        widgets = {
            'name': forms.TextInput(attrs={'placeholder': 'e.g. Espresso machine', 'autocomplete': 'off'}),
            'price': forms.NumberInput(attrs={'step': '0.01', 'min': '0'}),
        }


class CategoryForm(forms.ModelForm):
    class Meta:
        model = Category
        fields = ['name']
        widgets = {'name': forms.TextInput(attrs={'placeholder': 'New category', 'autocomplete': 'off'})}
